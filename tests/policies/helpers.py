"""Small hand-built snapshots for table-driven policy tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from burst.domain import Instance, InstanceState, Job, Market, Node, Offer, Purpose
from policies import PolicyConfig, Snapshot, SpendView
from policies.model import OverflowConfig, ScaleInConfig

NOW = 1_000_000.0
NO_CAP = SpendView()
MIN = 60.0


def offer(
    cloud: str = "aws",
    itype: str = "p4d.24xlarge",
    region: str = "us-east-1",
    zone: str = "use1-az1",
    gpu: str = "A100",
    count: int = 8,
    price: float = 32.0,
    market: Market = Market.ON_DEMAND,
    mem: float | None = None,
) -> Offer:
    memory = mem if mem is not None else {"A100": 40.0, "A100-80GB": 80.0, "V100": 16.0, "H100": 80.0}.get(gpu, 0.0)
    return Offer(cloud, itype, region, zone, gpu, count, memory, price, market)


# A small market. Per-GPU-hour: V100x8 3.06 < A100x8 az1 4.00 = az2 4.00 < us-west-2 4.125
# < azure 4.25 < A100x1 5.00; H100x8 10.0.
V100_8 = offer(itype="p3.16xlarge", gpu="V100", price=24.48, zone="use1-az1")
A100_8_AZ1 = offer(zone="use1-az1", price=32.0)
A100_8_AZ2 = offer(zone="use1-az2", price=32.0)
A100_8_WEST = offer(region="us-west-2", zone="usw2-az1", price=33.0)
A100_8_AZURE = offer(cloud="azure", itype="Standard_ND96asr_v4", region="eastus", zone="", price=34.0)
A100_1 = offer(itype="a100.1x", zone="use1-az1", count=1, price=5.0)
H100_8 = offer(itype="p5.48xlarge", gpu="H100", price=80.0)
A100_8_SPOT = offer(zone="use1-az1", price=12.0, market=Market.SPOT)

MARKET = (V100_8, A100_8_AZ1, A100_8_AZ2, A100_8_WEST, A100_8_AZURE, A100_1, H100_8, A100_8_SPOT)
A100_MARKET = (A100_8_AZ1, A100_8_AZ2, A100_8_WEST, A100_8_AZURE, A100_1)


def job(
    jid: str,
    gpus: int = 1,
    waited: float = 30 * MIN,
    *,
    nodes: int = 1,
    may_burst: bool = True,
    gpu_model: str = "",
    mem: float = 0.0,
    image: str = "",
    now: float = NOW,
) -> Job:
    per = gpus // nodes if nodes > 1 else 0
    return Job(
        id=jid, gpus=gpus, submit_time=now - waited, nodes=nodes, gpus_per_node=per, may_burst=may_burst,
        gpu_model=gpu_model, min_gpu_memory_gib=mem, image=image, team="ml", owner="ada",
    )


def onprem(name: str, used: int = 8, gpus: int = 8, model: str = "A100", jobs: int | None = None) -> Node:
    return Node(name, gpus, used, model, running_jobs=(1 if used else 0) if jobs is None else jobs)


def full_cluster(n: int = 4) -> tuple[Node, ...]:
    return tuple(onprem(f"n{i}") for i in range(n))


def instance(
    iid: str,
    state: InstanceState,
    o: Offer = A100_8_AZ1,
    *,
    idle_since: float | None = None,
    launched_at: float | None = NOW - 3600,
    purpose: Purpose = Purpose.OVERFLOW,
    for_jobs: tuple[str, ...] = (),
    gang_id: str = "",
) -> Instance:
    return Instance(
        id=iid, cloud=o.cloud, region=o.region, zone=o.zone, instance_type=o.instance_type, market=o.market,
        purpose=purpose, gpus=o.gpu_count, gpu_model=o.gpu_model, price_per_hour=o.price_per_hour, state=state,
        created_at=(launched_at or NOW) - 1, launched_at=launched_at, idle_since=idle_since,
        node_name=f"burst-{iid}" if state in (InstanceState.JOINED, InstanceState.DRAINING) else "", for_jobs=for_jobs,
        gang_id=gang_id,
    )


def cloud_node(inst: Instance, used: int = 0, jobs: int | None = None, schedulable: bool = True) -> Node:
    return Node(
        f"burst-{inst.id}", inst.gpus, used, inst.gpu_model, schedulable=schedulable, instance_id=inst.id,
        running_jobs=(1 if used else 0) if jobs is None else jobs,
    )


def snap(
    pending: Iterable[Job] = (),
    nodes: Iterable[Node] = (),
    instances: Iterable[Instance] = (),
    offers: Iterable[Offer] = MARKET,
    *,
    now: float = NOW,
    backoff: Mapping[str, float] | None = None,
    disabled: Iterable[str] = (),
    spend: SpendView = NO_CAP,
    running: Iterable[Job] = (),
) -> Snapshot:
    return Snapshot(
        now=now, cluster="test", pending=tuple(pending), running=tuple(running), nodes=tuple(nodes),
        instances=tuple(instances), offers=tuple(offers), backoff_until=dict(backoff or {}),
        disabled_providers=frozenset(disabled), spend=spend,
    )


# Explicit knobs, so the lead's tuning of the defaults does not move these tests.
OV = OverflowConfig(wait_threshold_s=20 * MIN)
SI = ScaleInConfig(idle_timeout_s=4 * MIN, join_timeout_s=20 * MIN)
CFG = PolicyConfig(overflow=OV, scale_in=SI, tick_interval_s=30.0)
