"""B2: one full Controller.tick at scale. See ../shared/BENCHMARKS.md.

Synthetic state per size: N pending jobs (ITP-like mix of 1/2/4/8-GPU jobs and 2-8 node gangs,
submitted over the last two hours so most are past the burst threshold), 2,000 on-prem nodes of
8 GPUs (10% with some free GPUs), 2,000 burst instances joined as nodes. I/O is faked with the
simulator's own fakes (SimCluster-like static queue, SimProvider, MemoryStore), so the figure is
burst's own work: observe, reconcile, snapshot, decide (virtual scheduling, packing, selection),
execute the plan against the fakes.

Each size runs in its own subprocess so its peak RSS is its own. Each measured tick starts from
a freshly built state (built outside the timing), so every tick does the same work.

Prints a table and a final JSON line with the median seconds per tick, peak RSS (MiB) and the
100k/10k time ratio (10x the work: a ratio near 10 is linear, ~13 is n log n).
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = (1_000, 10_000, 100_000)
NODES = 2_000
INSTANCES = 2_000
TICKS = 5


def build(pending: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from burst.controller import Controller
    from burst.domain import Instance, InstanceState, Job, Market, Node, Purpose, QueueSnapshot
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
    for i in range(NODES):
        used = 8 if rng.random() > 0.1 else rng.choice((4, 6, 7))
        nodes.append(Node(name=f"gpu{i:05d}", gpus=8, gpus_used=used, gpu_model="A100", running_jobs=1))
    from burst.domain import TAG_CLUSTER, TAG_ID, LaunchSpec

    for k in range(INSTANCES):
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
    running = tuple(Job(id=f"run{k:06d}", gpus=8, submit_time=now - 9000, start_time=now - 8000) for k in range(NODES))
    snap = QueueSnapshot(pending=tuple(jobs), running=running, nodes=tuple(nodes))

    class StaticQueue:
        name = "bench"

        def snapshot(self) -> QueueSnapshot:
            return snap

        def drain_node(self, node_name: str, reason: str) -> None: ...

        def undrain_node(self, node_name: str, reason: str) -> None: ...

        def remove_node(self, node_name: str) -> None: ...

    policy = PolicyConfig(overflow=OverflowConfig(max_instances=100_000, max_cloud_gpus=10_000_000))
    ctl = Controller(cluster="bench", queue=StaticQueue(), providers=providers, store=store, offers=offers, policy=policy)
    return ctl, now


def one_size(pending: int) -> dict[str, float]:
    times = []
    actions = 0
    for k in range(TICKS):
        ctl, now = build(pending, seed=k)
        t0 = time.perf_counter()
        res = ctl.tick(now)
        times.append(time.perf_counter() - t0)
        actions = len(res.plan.actions)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"pending": pending, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "peak_rss_mib": rss_mib, "actions": actions}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(one_size(int(sys.argv[2]))))
        return 0
    rows = []
    for n in SIZES:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'pending':>9} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MiB':>13} {'actions':>8}")
    for r in rows:
        print(f"{r['pending']:>9,} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f} {r['peak_rss_mib']:>13.0f} {r['actions']:>8}")
    by = {r["pending"]: r for r in rows}
    ratio = by[100_000]["median_s"] / by[10_000]["median_s"]
    print(f"100k/10k time ratio: {ratio:.2f} (10 = linear)")
    print(json.dumps({"bench": "tick", "nodes": NODES, "instances": INSTANCES, "ticks_per_size": TICKS, "results": rows, "ratio_100k_10k": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
