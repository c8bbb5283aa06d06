"""The README's B1 table and the claims under it are what `make demo` prints.

`make demo` runs `burst simulate --policy never,greedy,burst,clairvoyant` on the bundled trace at
80 nodes: the same `run_policies` this test calls, so each figure is compared as the table
formats it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from burst.sim.compare import headline, run_policies
from burst.sim.report import cost_ratio
from burst.sim.runner import SimSettings, b1_offers
from burst.sim.trace import bundled_trace_path, load_trace

README = Path(__file__).resolve().parents[2] / "README.md"


def _b1_section() -> str:
    text = README.read_text()
    start = text.index("## What the demo shows (B1, itp-c04, 80 nodes x 8 GPUs, on-demand prices)")
    return text[start : text.index("\n## ", start + 1)]


def _cells(line: str) -> list[str]:
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]


@pytest.mark.slow
def test_readme_b1_table_and_claims_match_the_demo() -> None:
    section = _b1_section()
    rows = {_cells(line)[0].split()[0]: _cells(line) for line in section.splitlines() if line.startswith("| ") and "---" not in line}
    assert _cells(next(line for line in section.splitlines() if line.startswith("| policy")))[1:] == [
        "p95 wait (min)", "max wait (min)", "cloud USD", "vs clairvoyant"]
    runs = run_policies(load_trace(bundled_trace_path()), ("never", "greedy", "burst", "clairvoyant"),
                        settings=SimSettings(nodes=80), offers=b1_offers())
    for r in runs:
        f = r.figures
        ratio = cost_ratio(r, runs)
        want = [f"{f['p95_wait_min']:.1f}", f"{f['max_wait_min']:.1f}", f"{f['cloud_usd']:,.0f}",
                "-" if ratio is None else f"{ratio:.3f}x"]
        assert rows[r.name][1:] == want, r.name
    by = {r.name: r.figures for r in runs}
    head = headline(runs)
    target = float(by["clairvoyant"]["wait_target_min"])
    assert head["clairvoyant_max_wait_min"] <= target == 30.0 and by["burst"]["max_wait_min"] <= target

    # the prose under the table
    less = round(100 * (1 - by["burst"]["cloud_usd"] / by["greedy"]["cloud_usd"]))
    assert f"for {less}% less than greedy bursting" in section
    assert f"pays {head['cost_ratio_vs_clairvoyant']:.3f}x what a clairvoyant reference pays" in " ".join(section.split())
    m = re.search(r"its longest wait is ([\d.]+) min", " ".join(section.split()))
    assert m is not None and m.group(1) == f"{head['clairvoyant_max_wait_min']:.1f}"
    b, c = by["burst"], by["clairvoyant"]
    work = b["gpu_hours_used"] / c["gpu_hours_used"]
    overhead = b["gpu_hours_paid"] / b["gpu_hours_used"]
    price = (b["cloud_usd"] / b["gpu_hours_paid"]) / (c["cloud_usd"] / c["gpu_hours_used"])
    flat = " ".join(section.split())
    assert f"{100 * (work - 1):.1f}% more GPU-hours of work in the cloud" in flat
    assert f"boot and idle time add {100 * (overhead - 1):.1f}%" in flat
    assert f"price per GPU-hour {100 * (price - 1):.1f}%" in flat
