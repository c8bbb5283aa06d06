"""docs/operations.md's spot B1 claim is what `bench/policy.py --nodes 64,80,96 --no-spot --spot`
prints: the maximum wait with notices at each size (within the 30 min target) and the savings
against burst on-demand. Same configuration and settings as ``bench/policy.py``'s
``spot_notices_run`` (its run without notices, which the claim does not cite, is skipped)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from burst.sim.runner import SimSettings, Simulation, b1_offers
from burst.sim.trace import bundled_trace_path, load_trace
from policies import PolicyConfig
from policies.model import SelectionConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SPOT_MEAN_H = 72  # bench/policy.py SPOT_MEAN_H
SIZES = (64, 80, 96)


def _claim() -> tuple[list[str], float]:
    text = " ".join(DOC.read_text().split())
    m = re.search(r"the maximum wait is then ([\d.]+), ([\d.]+) and ([\d.]+) min at 64, 80 and 96 nodes", text)
    s = re.search(r"spot still saves about (\d+)% against on-demand at each size", text)
    assert m and s, "the spot B1 claim in docs/operations.md"
    return list(m.groups()), float(s.group(1))


@pytest.mark.slow
def test_operations_doc_spot_b1_figures_are_what_the_bench_prints() -> None:
    waits, saves = _claim()
    trace = load_trace(bundled_trace_path())
    spot = PolicyConfig(name="burst", selection=SelectionConfig(allow_spot=True, weigh_reclaims=True))
    for nodes, doc_max in zip(SIZES, waits, strict=True):
        fig = Simulation(
            trace, spot, settings=SimSettings(nodes=nodes, spot_interrupt_mean_s=SPOT_MEAN_H * 3600, spot_notices=True),
            offers=b1_offers(spot=True),
        ).run().figures()
        od = Simulation(trace, PolicyConfig(name="burst"), settings=SimSettings(nodes=nodes), offers=b1_offers()).run().figures()
        assert f"{float(fig['max_wait_min']):.1f}" == doc_max, nodes
        assert float(fig["max_wait_min"]) <= 30.0, nodes
        pct = 100.0 * (float(od["cloud_usd"]) - float(fig["cloud_usd"])) / float(od["cloud_usd"])
        assert round(pct) == saves, (nodes, pct)
