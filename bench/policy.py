"""B1 (and B5): burst policy quality on a real trace. See ../shared/BENCHMARKS.md.

Scenario itp-c04: the bundled ITP cluster04 trace (15,802 jobs, 59.5 days), on-prem 80 x 8 GPUs
(headline; 64 and 96 also reported), cloud offers from the bundled catalog in AWS us-east-1 /
us-west-2 and Azure eastus / westus2, V100..H100, on-demand (a second run allows spot).
Policies side by side in one invocation: never, greedy (Cluster-Autoscaler-like reference),
burst (ours, default configuration), clairvoyant (reference that knows the future).

Prints a table per scenario, then one JSON line with every figure; the JSON's top level has
``cost_ratio_vs_clairvoyant`` and ``p95_wait_min`` for ``burst`` at 80 nodes on-demand, and
``sim_speedup`` (B5: simulated seconds per wall-clock second for the whole trace under burst).

Usage: python bench/policy.py [--nodes 64,80,96] [--no-spot] [--trace PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402

from burst.sim.compare import headline, run_policies  # noqa: E402
from burst.sim.report import render_table  # noqa: E402
from burst.sim.runner import SimSettings, b1_offers  # noqa: E402
from burst.sim.trace import bundled_trace_path, load_trace  # noqa: E402
from policies import PolicyConfig  # noqa: E402
from policies.model import SelectionConfig  # noqa: E402
from policies.reference import GREEDY  # noqa: E402

POLICIES = ("never", "greedy", "burst", "clairvoyant")
SPOT_MEAN_H = 72


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="64,80,96")
    ap.add_argument("--no-spot", action="store_true", help="skip the spot run")
    ap.add_argument("--trace", default=None)
    args = ap.parse_args()
    console = Console(width=170)
    trace = load_trace(args.trace or bundled_trace_path())
    sizes = [int(x) for x in args.nodes.split(",")]
    out: dict[str, object] = {"scenario": "itp-c04", "jobs": len(trace)}
    results: dict[str, dict[str, object]] = {}
    for nodes in sizes:
        runs = run_policies(trace, POLICIES, settings=SimSettings(nodes=nodes), offers=b1_offers())
        console.print(render_table(runs, f"B1 itp-c04, {nodes} nodes x 8 GPUs, on-demand (waits in minutes)"))
        head = headline(runs)
        console.print("  " + "  ".join(f"{k}={v:.3f}" for k, v in head.items()))
        results[f"{nodes}_on_demand"] = {"policies": {r.name: r.figures for r in runs}, **head}
    if not args.no_spot and 80 in sizes:
        # Spot for every policy that buys instances, and reclaims modelled: a spot instance is
        # taken back after an exponential time with a mean of SPOT_MEAN_H hours, and the jobs on
        # it restart from scratch (no checkpoints in the simulator): a deliberately cautious model.
        spot_cfg = PolicyConfig(name="burst", selection=SelectionConfig(allow_spot=True))
        greedy_spot = replace(GREEDY, selection=replace(GREEDY.selection, allow_spot=True))
        runs = run_policies(
            trace, POLICIES, settings=SimSettings(nodes=80, spot_interrupt_mean_s=SPOT_MEAN_H * 3600), offers=b1_offers(spot=True),
            burst_config=spot_cfg, overrides={"greedy": greedy_spot},
        )
        console.print(render_table(runs, f"B1 itp-c04, 80 nodes x 8 GPUs, spot allowed (reclaims: mean {SPOT_MEAN_H} h; waits in minutes)"))
        console.print("  spot reclaims: " + ", ".join(f"{r.name}={r.figures.get('interruptions', 0)}" for r in runs if r.name in ("greedy", "burst")))
        head = headline(runs)
        console.print("  " + "  ".join(f"{k}={v:.3f}" for k, v in head.items()))
        results["80_spot"] = {"policies": {r.name: r.figures for r in runs}, **head}
    headline_key = "80_on_demand" if "80_on_demand" in results else next(iter(results))
    h = results[headline_key]
    out.update(
        {
            "headline": headline_key,
            "cost_ratio_vs_clairvoyant": h.get("cost_ratio_vs_clairvoyant"),
            "cost_ratio_vs_greedy": h.get("cost_ratio_vs_greedy"),
            "p95_wait_min": h.get("p95_wait_min"),
            "sim_speedup": h.get("sim_speedup"),
            "sim_wall_s": h.get("sim_wall_s"),
            "results": results,
        }
    )
    print(json.dumps(out, default=float, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
