"""Release of a gang member's registration hold: the executor asks the queue (Kubernetes lifts
the burst.dev/gang taint) and audits it; queues that cannot hold are left alone."""

from __future__ import annotations

from burst.domain import Instance, InstanceState, Market, Plan, Purpose, Release
from burst.executor import Executor
from burst.sim.cluster import SimCluster
from burst.store.memory import MemoryStore


class HoldingQueue(SimCluster):
    def __init__(self) -> None:
        super().__init__(1, 8, "A100")
        self.released: list[str] = []

    def release_gang_hold(self, node_name: str) -> None:
        self.released.append(node_name)


def _member(store: MemoryStore) -> Instance:
    inst = Instance(
        id="b-0000000000000001", cloud="aws", region="us-east-1", zone="use1-az1", instance_type="p4d.24xlarge",
        market=Market.ON_DEMAND, purpose=Purpose.OVERFLOW, gpus=8, gpu_model="A100", price_per_hour=32.0,
        for_jobs=("g",), gang_id="grp",
    )
    store.create_intent(inst, now=0.0, actor="test", reason="a gang member")
    for to, extra in (
        (InstanceState.LAUNCHING, {"cloud_id": "i-1", "launched_at": 1.0}),
        (InstanceState.RUNNING, {}),
        (InstanceState.JOINED, {"node_name": "burst-g1", "joined_at": 2.0, "idle_since": 2.0}),
    ):
        store.transition_instance(inst.id, to, now=2.0, actor="test", reason="setup", **extra)
    return inst


def test_release_lifts_the_hold_through_the_queue_and_is_audited() -> None:
    store = MemoryStore()
    inst = _member(store)
    queue = HoldingQueue()
    ex = Executor(cluster="c", store=store, queue=queue, providers={}, gang_hold=queue)
    ex.execute(Plan((Release(inst.id, "every member of its gang has joined"),)), now=10.0)
    assert queue.released == ["burst-g1"]
    rows = [r for r in store.audit_rows(subject=inst.id, limit=50) if r.action == "release-gang-hold"]
    assert len(rows) == 1 and "joined" in rows[0].reason
    after = store.get_instance(inst.id)
    assert after is not None and after.state is InstanceState.JOINED
    assert after.idle_since == 10.0, "the idle clock restarts when the node becomes usable"


def test_release_on_a_queue_that_cannot_hold_is_a_no_op() -> None:
    store = MemoryStore()
    inst = _member(store)
    ex = Executor(cluster="c", store=store, queue=SimCluster(1, 8, "A100"), providers={})
    ex.execute(Plan((Release(inst.id, "whole"),)), now=10.0)
    assert not [r for r in store.audit_rows(subject=inst.id, limit=50) if r.action == "release-gang-hold"]
