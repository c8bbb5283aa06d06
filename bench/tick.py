"""B2: one full Controller.tick at scale. See ../shared/BENCHMARKS.md.

Synthetic state per size: N pending jobs (ITP-like mix of 1/2/4/8-GPU jobs and 2-8 node gangs,
submitted over the last two hours so most are past the burst threshold), on-prem nodes of
8 GPUs (10% with some free GPUs; 2,000 by default), burst instances joined as nodes (2,000 by
default). I/O is faked with the simulator's own fakes (SimCluster-like static queue,
SimProvider, MemoryStore), so the figure is burst's own work: observe, reconcile, snapshot,
decide (virtual scheduling, packing, selection), execute the plan against the fakes.

Each size runs in its own subprocess so its peak RSS is its own. Each measured tick starts from
a freshly built state (built outside the timing); the previous state is dropped first, so only
one state is alive at the RSS peak. Before each timed tick the garbage collector runs and the
surviving objects are frozen (``gc.freeze``), so a generation-2 collection of the state built
outside the timing does not land inside the tick.

Usage::

    python bench/tick.py                                   # 1k, 10k, 100k pending; 2k nodes/instances
    python bench/tick.py --pending 100000,1000000 --nodes 10000 --instances 10000
    python bench/tick.py ... --old /tmp/old                # side by side with another checkout

``--warm`` measures the second tick on each state instead of the first: the first (untimed)
tick sees the queue and launches; the measured one, a tick interval later, sees the same queue
snapshot again (a queue that did not change in 30 s, as the simulator's between events) with
those launches booting, so what the controller keeps between ticks (policies/pending_index.py)
is warm. Without it every measured tick is a controller's first.

``--old DIR`` runs every size under the checkout at DIR too (its ``burst`` and ``policies``),
interleaved with this one (old, new, old, new, ... one subprocess each), and prints both with
the old/new ratio. Prints a table and a final JSON line with the median seconds per tick, peak
RSS (MiB) and the growth ratio between consecutive sizes (10x the work: a ratio near 10 is
linear, ~13 is n log n; well below 10 is the goal).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

SIZES = (1_000, 10_000, 100_000)
NODES = 2_000
INSTANCES = 2_000
TICKS = 5


def build(pending: int, seed: int = 0, nodes_n: int = NODES, instances_n: int = INSTANCES):  # type: ignore[no-untyped-def]
    from burst.controller import Controller
    from burst.domain import (
        TAG_CLUSTER,
        TAG_ID,
        Instance,
        InstanceState,
        Job,
        LaunchSpec,
        Market,
        Node,
        Purpose,
        QueueSnapshot,
    )
    from burst.sim.clock import VirtualClock
    from burst.sim.cloud import SimProvider
    from burst.sim.runner import b1_offers
    from burst.store.memory import MemoryStore
    from policies import OverflowConfig, PolicyConfig

    rng = random.Random(seed)
    now = 1_700_000_000.0
    clock = VirtualClock(now)
    offers = b1_offers()
    store = MemoryStore(audit_limit=1000)
    providers = {c: SimProvider(c, "bench", clock) for c in ("aws", "azure")}
    p4d = next(o for o in offers if o.instance_type == "p4d.24xlarge" and o.region == "us-east-1")
    nodes: list[Node] = []
    for i in range(nodes_n):
        used = 8 if rng.random() > 0.1 else rng.choice((4, 6, 7))
        nodes.append(Node(name=f"gpu{i:05d}", gpus=8, gpus_used=used, gpu_model="A100", running_jobs=1))
    for k in range(instances_n):
        iid = f"b-bench{k:06d}"
        inst = Instance(
            id=iid, cloud="aws", region=p4d.region, zone=p4d.zone, instance_type=p4d.instance_type, market=Market.ON_DEMAND,
            purpose=Purpose.OVERFLOW, gpus=8, gpu_model="A100", price_per_hour=p4d.price_per_hour, created_at=now - 3600,
        )
        store.create_intent(inst, now=now - 3600, actor="bench", reason="bench")
        ci = providers["aws"].launch(LaunchSpec(iid, p4d, Purpose.OVERFLOW, {TAG_CLUSTER: "bench", TAG_ID: iid}))
        store.transition_instance(iid, InstanceState.LAUNCHING, now=now - 3600, actor="bench", reason="bench", cloud_id=ci.cloud_id, launched_at=now - 3600)
        store.transition_instance(iid, InstanceState.JOINED, now=now - 3300, actor="bench", reason="bench", node_name=f"burst-{iid}", joined_at=now - 3300)
        nodes.append(Node(name=f"burst-{iid}", gpus=8, gpus_used=8, gpu_model="A100", instance_id=iid, running_jobs=1))
    providers["aws"].advance(now)
    sizes = [1] * 75 + [2] * 3 + [4] * 5 + [8] * 15 + [16, 32]
    jobs = []
    for j in range(pending):
        g = rng.choice(sizes)
        nn, per = (g // 8, 8) if g > 8 else (1, g)
        jobs.append(Job(id=f"job{j:07d}", gpus=g, submit_time=now - 7200 * (1 - j / pending), gpus_per_node=per, nodes=nn, reason="Resources"))
    running = tuple(Job(id=f"run{k:06d}", gpus=8, submit_time=now - 9000, start_time=now - 8000) for k in range(nodes_n))
    snap = QueueSnapshot(pending=tuple(jobs), running=running, nodes=tuple(nodes))
    del jobs, nodes

    class StaticQueue:
        name = "bench"

        def snapshot(self) -> QueueSnapshot:
            return snap

        def drain_node(self, node_name: str, reason: str) -> None: ...

        def undrain_node(self, node_name: str, reason: str) -> None: ...

        def remove_node(self, node_name: str) -> None: ...

    # Fleet caps above the synthetic fleet, so the launch limit per tick is what binds.
    policy = PolicyConfig(overflow=OverflowConfig(max_instances=instances_n + 100_000, max_cloud_gpus=10_000_000))
    ctl = Controller(cluster="bench", queue=StaticQueue(), providers=providers, store=store, offers=offers, policy=policy)
    return ctl, now


def one_size(pending: int, nodes_n: int, instances_n: int, ticks: int, warm: bool = False) -> dict[str, float]:
    times = []
    actions = 0
    ctl = None
    for k in range(ticks):
        ctl = None  # drop the previous state before building the next: one state alive at a time
        gc.unfreeze()
        gc.collect()
        ctl, now = build(pending, seed=k, nodes_n=nodes_n, instances_n=instances_n)
        if warm:
            # The tick measured is the next one on this state: the controller has seen this
            # queue before (its indexes are warm) and its own launches of the first tick are
            # booting; the queue source hands back the same snapshot, as one that did not
            # change in a tick interval does.
            ctl.tick(now)
            now += ctl.policy.tick_interval_s
            for p in ctl.providers.values():  # the SimProviders: boots progress
                p.advance(now)
        gc.collect()
        gc.freeze()  # the state built outside the timing is never scanned inside it
        t0 = time.perf_counter()
        res = ctl.tick(now)
        times.append(time.perf_counter() - t0)
        actions = len(res.plan.actions)
        del res
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "pending": pending, "nodes": nodes_n, "instances": instances_n, "median_s": statistics.median(times),
        "min_s": min(times), "max_s": max(times), "peak_rss_mib": rss_mib, "actions": actions, "ticks": ticks,
        "warm": warm,
    }


def run_one(root: Path, pending: int, nodes_n: int, instances_n: int, ticks: int, warm: bool = False) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, __file__, "--one", "--root", str(root), "--pending", str(pending),
           "--nodes", str(nodes_n), "--instances", str(instances_n), "--ticks", str(ticks)] + (["--warm"] if warm else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def growth(rows: list[dict[str, float]]) -> dict[str, float]:
    """Time ratio between consecutive sizes, keyed "<small>-><large>"."""
    out: dict[str, float] = {}
    for a, b in zip(rows, rows[1:], strict=False):
        out[f"{int(a['pending'])}->{int(b['pending'])}"] = b["median_s"] / a["median_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pending", default=",".join(str(s) for s in SIZES), help="comma-separated pending-job counts")
    ap.add_argument("--nodes", type=int, default=NODES, help="on-prem nodes")
    ap.add_argument("--instances", type=int, default=INSTANCES, help="burst instances joined as nodes")
    ap.add_argument("--ticks", type=int, default=TICKS, help="measured ticks per size (median reported)")
    ap.add_argument("--warm", action="store_true",
                    help="measure the second tick on each state (same queue, the first tick's launches booting), not the first")
    ap.add_argument("--old", default=None, metavar="DIR", help="also run the checkout at DIR, interleaved")
    ap.add_argument("--root", default=str(HERE), help=argparse.SUPPRESS)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(x) for x in args.pending.split(",")]
    if args.one:
        sys.path.insert(0, args.root)
        print(json.dumps(one_size(sizes[0], args.nodes, args.instances, args.ticks, args.warm)))
        return 0
    sides = {"new": HERE} | ({"old": Path(args.old).resolve()} if args.old else {})
    rows: dict[str, list[dict[str, float]]] = {s: [] for s in sides}
    for i, n in enumerate(sizes):
        # interleaved, and which side goes first alternates by size
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            rows[side].append(run_one(sides[side], n, args.nodes, args.instances, args.ticks, args.warm))
    which = "second (warm) tick" if args.warm else "first tick"
    print(f"nodes {args.nodes:,}, instances {args.instances:,}, {args.ticks} ticks per size ({which} of each state), load {os.getloadavg()[0]:.1f}")
    print(f"{'side':>5} {'pending':>10} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MiB':>13} {'actions':>8}")
    for side, rs in rows.items():
        for r in rs:
            print(f"{side:>5} {r['pending']:>10,} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f} {r['peak_rss_mib']:>13.0f} {r['actions']:>8}")
    ratios = {side: growth(rs) for side, rs in rows.items()}
    for side, g in ratios.items():
        print(f"{side}: growth " + ", ".join(f"{k} x{v:.2f}" for k, v in g.items()) + " (10x the jobs; 10 = linear)")
    if "old" in rows:
        for o, nw in zip(rows["old"], rows["new"], strict=True):
            print(f"{int(nw['pending']):,} pending: old/new time {o['median_s'] / nw['median_s']:.2f}x, "
                  f"RSS {o['peak_rss_mib']:.0f} -> {nw['peak_rss_mib']:.0f} MiB")
    out: dict[str, object] = {
        "bench": "tick", "warm": args.warm, "nodes": args.nodes, "instances": args.instances, "ticks_per_size": args.ticks,
        "results": rows["new"], "growth": ratios["new"],
    }
    if "old" in rows:
        out["old"] = {"results": rows["old"], "growth": ratios["old"]}
    by = {r["pending"]: r for r in rows["new"]}
    if 10_000 in by and 100_000 in by:
        out["ratio_100k_10k"] = by[100_000]["median_s"] / by[10_000]["median_s"]
    if 100_000 in by and 1_000_000 in by:
        out["ratio_1m_100k"] = by[1_000_000]["median_s"] / by[100_000]["median_s"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
