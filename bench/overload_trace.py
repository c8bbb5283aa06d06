"""B5: a seeded heavy-overload trace shaped like the ITP traces, and its replay under every policy.

The generator draws each job's (GPUs, duration) pair from the bundled ITP cluster04 trace (so
sizes, durations and their correlation are the real ones: 1-GPU jobs are most of the count,
8-64 GPU gangs most of the GPU-hours), and arrival times from a Poisson process whose rate
follows the day (the ITP traces' diurnal swing, about +-30% around the mean, peaking in the
working day). The arrival rate is set so that the work offered is ``--load`` times what
``--nodes`` x 8 GPUs can do over the span (1.5 by default: half again as much as the
cluster can run, so under ``never`` the queue grows for the whole replay). Same seed, same
trace, byte for byte.

Usage::

    python bench/overload_trace.py --out /tmp/overload.csv            # write the trace only
    python bench/overload_trace.py --replay                           # generate and replay
    python bench/overload_trace.py --replay --old /tmp/old --timeout 120   # side by side

The replay runs each policy (never, greedy, burst, clairvoyant) in its own subprocess, one
checkout after the other per policy (old first, then new, alternating by policy), and prints
wall seconds and the old/new ratio; a side still running after ``--timeout`` seconds is
reported as ``>timeout``. Last line: JSON.

Status against issue 15's goal (<= 20 s per policy), PARTIAL: the per-tick rebuild of the
pending tuple (what grew with the queue under ``never``) is gone (burst/sim/cluster.py keeps the
list, and since 2026-12-03 the tuple itself until the queue changes; running views come from a
dict kept beside the running jobs; a scheduling pass stops retrying shapes that did not fit).
``never`` was about 13.7 s on a quiet machine. ``greedy`` and ``burst`` are bound by the
controller's per-tick work over every live instance and node (policies/overflow.build_pools,
the controller's reconcile, policies/scale_in), not by the queue. Since 2026-12-03 (branch
wp-b5) the reconcile asks nothing about an instance whose store row, cloud listing and node are
the very objects that needed nothing last tick (burst/reconcile_memo.py), the cloud listing is
reused while the simulated providers hand back the same tuple, and build_pools/scale-in test
the cheap fields first: same decisions (B1 identical), CPU seconds side by side on a loaded
machine: ``greedy`` 42-50 -> 33-36, ``burst`` 44-50 -> 35-42 (about 1.25-1.4x).

Since 2026-12-03 (branch wp-b5sim) the simulator also counts without running the ticks it can
prove idle (burst/sim/runner.py, ``Simulation._idle_after``): a tick driven only by an on-prem
change while nothing is queued, after a tick that acted on nothing. Here that is the stretches
where bursting has emptied the queue: ``greedy`` elides 101,047 of its 157,440 ticks, ``burst``
68,906 of 151,876, ``never`` (a queue all along) 1,007 of 145,476; the figures are the same on
both sides (ticks, p95, cost, unfinished). With the policy-side memos merged too
(policies/tick_memo.py), CPU seconds side by side with ``--old`` (the code at the start of
2026-12-03), one quiet run: ``greedy`` 36.2 -> 23.0 (1.6x), ``burst`` 35.7 -> 20.5 (1.7x),
``never`` 11.9 -> 13.0 (noise; repeated new-side runs 12.9-17.1). PARTIAL, still over 20 s:
the ticks that run keep a queue and a fleet that changes every tick, so the pools memo
rebuilds on about half of them; the rest is many small per-tick costs, not one hotspot. Compare sides by ``cpu_s`` on a shared machine;
``ticks_elided`` is null for a checkout that runs every tick.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
ITP = HERE / "burst" / "data" / "itp_cluster04.csv"
POLICIES = ("never", "greedy", "burst", "clairvoyant")
DIURNAL = 0.3  # relative swing of the arrival rate over a day
PEAK_HOUR = 14.0


def generate(jobs: int, days: float, *, nodes: int = 80, gpus_per_node: int = 8, load: float = 1.5,
             seed: int = 0, source: Path = ITP) -> list[tuple[str, int, int, int]]:
    """(job_id, submission_time, duration, num_gpu) rows, sorted by submission time.

    Sizes and durations are resampled pairs of ``source``; durations are scaled by one factor
    so the offered GPU-seconds are ``load`` x the capacity over ``days``."""
    rng = random.Random(seed)
    with source.open(newline="") as f:
        pairs = [(int(r["num_gpu"]), float(r["duration"])) for r in csv.DictReader(f)]
    picked = [pairs[rng.randrange(len(pairs))] for _ in range(jobs)]
    span = days * 86400.0
    offered = sum(g * d for g, d in picked)
    scale = load * nodes * gpus_per_node * span / offered
    # Arrival times: inverse of the cumulative diurnal rate on a fine grid (1 min), sampled at
    # sorted uniforms, so exactly ``jobs`` arrivals fall in the span, denser by day.
    step = 60.0
    grid = [0.0]
    for k in range(int(span // step)):
        t = k * step
        rate = 1.0 + DIURNAL * math.cos(2 * math.pi * ((t / 3600.0) % 24 - PEAK_HOUR) / 24.0)
        grid.append(grid[-1] + rate)
    total = grid[-1]
    times = sorted(rng.random() * total for _ in range(jobs))
    rows = []
    for k, (u, (gpus, dur)) in enumerate(zip(times, picked, strict=True)):
        i = max(1, bisect.bisect_left(grid, u))
        lo, hi = grid[i - 1], grid[i]
        t = (i - 1 + (u - lo) / (hi - lo if hi > lo else 1.0)) * step
        rows.append((f"ovl-{seed}-{k:07d}", int(t), max(1, int(round(dur * scale))), gpus))
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def write(rows: list[tuple[str, int, int, int]], out: Path) -> None:
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("job_id", "submission_time", "duration", "num_gpu"))
        w.writerows(rows)


def replay_one(trace: Path, policy: str, nodes: int) -> dict[str, object]:
    """One policy over the trace in this process (the checkout on sys.path)."""
    from burst.sim.compare import run_policies
    from burst.sim.runner import SimSettings, Simulation, b1_offers
    from burst.sim.trace import load_trace
    from policies.reference import BY_NAME

    jobs = load_trace(trace)
    t0, c0 = time.perf_counter(), time.process_time()
    elided = None
    if policy in BY_NAME:
        res = Simulation(jobs, BY_NAME[policy], settings=SimSettings(nodes=nodes), offers=b1_offers()).run()
        f = res.figures()
        elided = getattr(res, "ticks_elided", None)  # None: a checkout that runs every tick
    else:
        f = run_policies(jobs, (policy,), settings=SimSettings(nodes=nodes), offers=b1_offers())[0].figures
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # cpu_s: this process's CPU seconds for the replay. On a shared, loaded machine the wall time
    # stretches with the load; the CPU time much less, so it is the figure to compare sides by.
    # ticks: the daemon's ticks; ticks_elided: how many of them the simulator proved idle and
    # counted without running (burst/sim/runner.py).
    return {"policy": policy, "wall_s": wall, "cpu_s": cpu, "sim_wall_s": f.get("wall_s"), "ticks": f.get("ticks"),
            "ticks_elided": elided, "p95_wait_min": f.get("p95_wait_min"), "cloud_usd": f.get("cloud_usd"),
            "unfinished": f.get("unfinished")}


def run_side(root: Path, trace: Path, policy: str, nodes: int, timeout: float) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, __file__, "--one", policy, "--trace", str(trace), "--nodes", str(nodes), "--root", str(root)]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"policy": policy, "wall_s": None, "timed_out_after_s": timeout}
    res: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=100.0)
    ap.add_argument("--nodes", type=int, default=80, help="on-prem nodes of 8 GPUs (load is relative to them)")
    ap.add_argument("--load", type=float, default=1.5, help="offered GPU-hours / capacity over the span")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the trace here (ITP format)")
    ap.add_argument("--trace", default=None, help="replay this trace instead of generating one")
    ap.add_argument("--replay", action="store_true", help="replay under every policy")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--old", default=None, metavar="DIR", help="also replay with the checkout at DIR")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per policy and side")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=str(HERE), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        sys.path.insert(0, args.root)
        print(json.dumps(replay_one(Path(args.trace), args.one, args.nodes), default=float))
        return 0
    trace = Path(args.trace) if args.trace else Path(args.out or f"/tmp/burst-overload-{args.seed}-{args.jobs}-{args.days:g}d.csv")
    if not args.trace:
        rows = generate(args.jobs, args.days, nodes=args.nodes, load=args.load, seed=args.seed)
        write(rows, trace)
        print(f"wrote {trace}: {len(rows):,} jobs over {rows[-1][1] / 86400:.1f} days, load {args.load} on {args.nodes} x 8 GPUs")
    if not args.replay:
        return 0
    sides = {"new": HERE} | ({"old": Path(args.old).resolve()} if args.old else {})
    found: dict[str, dict[str, dict[str, object]]] = {s: {} for s in sides}
    for i, pol in enumerate(args.policies.split(",")):
        order = list(sides) if i % 2 else list(reversed(sides))
        for side in order:
            found[side][pol] = run_side(sides[side], trace, pol, args.nodes, args.timeout)
            r = found[side][pol]
            wall = r.get("wall_s")
            cpu = r.get("cpu_s")
            print(f"{side:>4} {pol:12s} " + (f"{wall:8.2f} s" if isinstance(wall, float) else f">{args.timeout:.0f} s (timed out)")
                  + (f"  (CPU {cpu:.2f} s)" if isinstance(cpu, float) else ""), flush=True)
    if "old" in found:
        for pol in found["new"]:
            n, o = found["new"][pol].get("wall_s"), found["old"][pol].get("wall_s")
            if isinstance(n, float) and isinstance(o, float):
                oc, nc = found["old"][pol].get("cpu_s"), found["new"][pol].get("cpu_s")
                by_cpu = f", CPU {oc / nc:.2f}x" if isinstance(oc, float) and isinstance(nc, float) and nc else ""
                print(f"{pol:12s} old/new {o / n:.2f}x{by_cpu}")
    made = {} if args.trace else {"jobs": args.jobs, "days": args.days, "load": args.load, "seed": args.seed}
    print(json.dumps({"bench": "overload", "trace": str(trace), **made, "nodes": args.nodes, "results": found}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
