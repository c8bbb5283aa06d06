"""Where burst's B1 cost over the clairvoyant reference comes from, by job class.

Replays one trace at one size under ``burst`` (default configuration) and the clairvoyant
reference, joins each job's placement in both, and splits the dollar gap (all work priced at the
reference's price per GPU-hour) into:

* work: GPU-hours burst ran in the cloud minus the reference's, by job class (GPUs x duration),
  with the jobs only burst sent and only the reference sent;
* price: what burst's instances cost per GPU-hour above the reference's price, for the work
  on them;
* boot: launch request to joined, per instance, charged to the class of its first job;
* idle: the rest of each instance's bill (idle tails, unused GPUs, billing minimum).

Usage: python bench/b1_gap.py [--trace PATH] [--nodes 80]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from burst.sim.clairvoyant import run_clairvoyant  # noqa: E402
from burst.sim.runner import SimSettings, Simulation, b1_offers  # noqa: E402
from burst.sim.trace import TraceJob, bundled_trace_path, load_trace  # noqa: E402
from policies.reference import BURST  # noqa: E402


def job_class(j: TraceJob) -> str:
    size = "1 GPU" if j.gpus == 1 else "2-4 GPU" if j.gpus <= 4 else "8 GPU" if j.gpus <= 8 else "gang"
    dur = "<1h" if j.duration < 3600 else "1-4h" if j.duration < 4 * 3600 else ">=4h"
    return f"{size} {dur}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=None)
    ap.add_argument("--nodes", type=int, default=80)
    args = ap.parse_args()
    jobs = load_trace(args.trace or bundled_trace_path())
    offers = b1_offers()
    ref_price = min(o.price_per_gpu_hour for o in offers)
    ref = run_clairvoyant(jobs, nodes=args.nodes, gpus_per_node=8, price_per_gpu_hour=ref_price)
    sim = Simulation(jobs, BURST, settings=SimSettings(nodes=args.nodes), offers=offers)
    res = sim.run()
    by_id = {j.id: j for j in jobs}
    insts = {i.id: i for i in sim.store.instances()}
    node_inst = {n.idx: n.instance_id for n in sim.cluster.nodes}
    ref_cloud = set(ref.cloud)
    burst_cloud: dict[str, float] = {}  # job -> its instance's price per GPU-hour
    on_inst: dict[str, list[str]] = defaultdict(list)
    for jid, sj in sim.cluster.finished.items():
        if sj.cloud:
            first = insts[node_inst[sj.nodes[0]]]
            burst_cloud[jid] = first.price_per_hour / first.gpus
            for idx in sj.nodes:
                on_inst[node_inst[idx]].append(jid)
    cols = ("burst work", "ref work", "burst-only", "ref-only", "price", "boot", "idle")
    table: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(cols, 0.0))
    for jid, per_gpu in burst_cloud.items():
        j = by_id[jid]
        row, gpu_h = table[job_class(j)], j.gpus * j.duration / 3600
        row["burst work"] += gpu_h * ref_price
        row["price"] += gpu_h * (per_gpu - ref_price)
        if jid not in ref_cloud:
            row["burst-only"] += gpu_h * ref_price
    for jid in ref_cloud:
        j = by_id[jid]
        row, gpu_h = table[job_class(j)], j.gpus * j.duration / 3600
        row["ref work"] += gpu_h * ref_price
        if jid not in burst_cloud:
            row["ref-only"] += gpu_h * ref_price
    for iid, inst in insts.items():
        if inst.launched_at is None or inst.terminated_at is None:
            continue
        rate = inst.price_per_hour / 3600
        paid = max(60.0, inst.terminated_at - inst.launched_at) * rate
        boot = ((inst.joined_at or inst.terminated_at) - inst.launched_at) * rate
        used = sum(by_id[jid].per_node * by_id[jid].duration for jid in on_inst.get(iid, ())) * rate / inst.gpus
        first_job = by_id.get(inst.for_jobs[0]) if inst.for_jobs else None
        row = table[job_class(first_job) if first_job else "?"]
        row["boot"] += boot
        row["idle"] += paid - boot - used
    tot = {c: sum(r[c] for r in table.values()) for c in cols}
    gap = res.cloud_usd - ref.cloud_usd
    print(f"{args.nodes} nodes: burst {res.cloud_usd:,.0f} USD, reference {ref.cloud_usd:,.0f} USD, "
          f"ratio {res.cloud_usd / ref.cloud_usd:.3f}; reference max wait {ref.max_wait_s / 60:.1f} min")
    print(f"gap {gap:,.0f} = work {tot['burst work'] - tot['ref work']:,.0f} (burst-only {tot['burst-only']:,.0f}, "
          f"reference-only {tot['ref-only']:,.0f}) + price {tot['price']:,.0f} + boot {tot['boot']:,.0f} + idle {tot['idle']:,.0f}")
    print(f"{'class':14}" + "".join(f"{c:>12}" for c in cols) + f"{'net gap':>10}")
    for k in sorted(table):
        r = table[k]
        net = r["burst work"] - r["ref work"] + r["price"] + r["boot"] + r["idle"]
        print(f"{k:14}" + "".join(f"{r[c]:>12,.0f}" for c in cols) + f"{net:>10,.0f}")
    print(f"jobs burst-only {sum(1 for j in burst_cloud if j not in ref_cloud)}, "
          f"reference-only {sum(1 for j in ref_cloud if j not in burst_cloud)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
