"""The pending index (policies/pending_index.py) kept between ticks decides exactly what the
overflow pass decides without it, first use or reused; the controller keeps it while the queue
source hands back the same pending tuple and drops it when the tuple changes. Also: the joined
pool that build_pools counts per kind of node is the pool it built node by node.

The equivalence is a contract like test_overflow_fast_path.py's: random small snapshots checked
field by field against the full walk, with the index used once and then again (its order,
may-burst counts and the ids it answered are all kept on the index).
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.controller import Controller
from burst.domain import GANG_HOLD_LABEL, InstanceState, Job, Node, Purpose, QueueSnapshot
from burst.sim.clock import VirtualClock
from burst.sim.cloud import SimProvider
from burst.store.memory import MemoryStore
from policies import decide
from policies.model import PolicyConfig
from policies.overflow import build_pools, joined_key, select_overflow
from policies.packing import SlotPool
from policies.pending_index import PendingIndex, index_for
from tests.policies.helpers import MIN, NOW, job, snap
from tests.policies.test_overflow_fast_path import OFFERS, _same, worlds


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.integers(0, 6))
def test_index_decides_as_the_full_walk_first_use_and_reused(world, limit: int) -> None:  # type: ignore[no-untyped-def]
    pending, nodes, instances, running, cfg = world
    full = select_overflow(NOW, pending, nodes, instances, cfg, running=running, fast=False)
    index = PendingIndex(pending)
    for _ in range(2):  # the second call answers from what the first left on the index
        fast = select_overflow(NOW, pending, nodes, instances, cfg, running=running, tail_min=0, index=index)
        _same(fast, full, counted=cfg.enabled)
        cut = select_overflow(NOW, pending, nodes, instances, cfg, running=running, limit=limit, tail_min=0, index=index)
        assert [j.id for j in cut.burst] == [j.id for j in full.burst][:limit]
        assert cut.burst_total == len(full.burst)
    # Fewer instances (a launch closed since): the ids asked change and are answered afresh.
    fewer = instances[: len(instances) // 2]
    again = select_overflow(NOW, pending, nodes, fewer, cfg, running=running, tail_min=0, index=index)
    _same(again, select_overflow(NOW, pending, nodes, fewer, cfg, running=running, fast=False), counted=cfg.enabled)


@given(worlds())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decide_plans_the_same_with_the_index(world) -> None:  # type: ignore[no-untyped-def]
    pending, nodes, instances, _running, cfg = world
    s = snap(pending, nodes, instances, OFFERS)
    s_idx = dataclasses.replace(s, pending_index=PendingIndex(s.pending))
    pc = PolicyConfig(overflow=cfg)
    assert decide(s_idx, pc) == decide(s, pc)
    assert decide(s_idx, pc) == decide(s, pc)  # reused


def test_an_index_answers_for_its_own_tuple_only() -> None:
    """An equal tuple that is another object gets a new index: the index never answers for a
    queue it was not built from (a recycled tuple id cannot fool it: it holds its tuple)."""
    a = (job("x", 1, 30 * MIN), job("y", 1, 20 * MIN))
    b = tuple(a)[:]
    b2 = tuple(list(a))
    ia = PendingIndex(a)
    assert index_for(a, ia) is ia
    assert b is a and index_for(b, ia) is ia
    assert b2 == a and b2 is not a
    assert index_for(b2, ia) is not ia
    assert index_for(a, None).describes(a)


def test_order_and_may_burst_counts() -> None:
    jobs = (
        job("c", 1, 10 * MIN), job("a", 1, 30 * MIN, may_burst=False), job("b", 1, 30 * MIN), job("d", 1, 5 * MIN, may_burst=False),
    )
    idx = PendingIndex(jobs)
    assert [j.id for j in idx.order] == ["a", "b", "c", "d"]  # submit time, then id
    for lo in range(5):
        for hi in range(lo, 5):
            assert idx.may_burst_between(lo, hi) == sum(j.may_burst for j in idx.order[lo:hi])
    already = tuple(idx.order)
    assert PendingIndex(already).order is already  # sorted already: no copy


def test_with_ids_in_queue_order_with_repeats_and_memo() -> None:
    jobs = (job("a", 1, 30 * MIN), job("b", 1, 20 * MIN), job("a", 2, 10 * MIN))
    idx = PendingIndex(jobs)
    got = idx.with_ids({"a", "zz"})
    assert got == [jobs[0], jobs[2]]
    got.clear()  # a caller's list is its own: the kept answer is not changed through it
    assert idx.with_ids({"a", "zz"}) == [jobs[0], jobs[2]]
    assert idx.with_ids({"b"}) == [jobs[1]]


class _Queue:
    name = "q"

    def __init__(self, snap: QueueSnapshot) -> None:
        self.snap = snap

    def snapshot(self) -> QueueSnapshot:
        return self.snap

    def drain_node(self, node_name: str, reason: str) -> None: ...

    def undrain_node(self, node_name: str, reason: str) -> None: ...

    def remove_node(self, node_name: str) -> None: ...


def test_controller_keeps_the_index_while_the_queue_tuple_is_the_same() -> None:
    pending: tuple[Job, ...] = (job("b", 8, 1 * MIN), job("a", 8, 2 * MIN))  # not in order
    q = _Queue(QueueSnapshot(pending, (), (Node("n0", 8, 8, "A100", running_jobs=1),)))
    clock = VirtualClock(NOW)
    ctl = Controller(cluster="c", queue=q, providers={"aws": SimProvider("aws", "c", clock)}, store=MemoryStore(),
                     offers=OFFERS, policy=PolicyConfig())
    first = ctl.tick(NOW).snapshot
    assert first is not None and first.pending_index is not None and first.pending_index.describes(pending)
    second = ctl.tick(NOW + 30).snapshot
    assert second is not None and second.pending_index is first.pending_index
    q.snap = QueueSnapshot(tuple(pending[:1]) + (job("c", 1, 0.0),), (), q.snap.nodes)
    third = ctl.tick(NOW + 60).snapshot
    assert third is not None and third.pending_index is not first.pending_index
    assert third.pending_index is not None and third.pending_index.describes(q.snap.pending)


def _joined_node_by_node(nodes: tuple[Node, ...], instances: tuple, pending_gangs: frozenset[str]) -> SlotPool:  # type: ignore[type-arg]
    """The joined pool as build_pools made it before it counted per kind: one add per node."""
    pool = SlotPool()
    by_id = {i.id: i for i in instances}
    for n in nodes:
        if not n.instance_id:
            continue
        inst = by_id.get(n.instance_id)
        if inst is not None and (inst.state is InstanceState.DRAINING or inst.purpose is Purpose.ON_DEMAND):
            continue
        held = GANG_HOLD_LABEL in n.labels
        if (inst is not None and inst.gang_id and inst.for_jobs and inst.for_jobs[0] in pending_gangs
                and n.schedulable and n.idle and inst.state is InstanceState.JOINED):
            continue
        if held:
            continue
        loc, model = joined_key(inst.cloud, inst.region, n.gpus, n.gpu_model) if inst is not None else joined_key("cloud", "?", n.gpus, n.gpu_model)
        pool.add(n.gpus_free, loc, model)
    return pool


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_joined_pool_counted_per_kind_is_the_node_by_node_pool(world) -> None:  # type: ignore[no-untyped-def]
    """Same buckets, same keys in the same order (first fit walks them in that order)."""
    pending, nodes, instances, _running, _cfg = world
    gangs = frozenset(j.id for j in pending if j.is_gang)
    got = build_pools(nodes, instances, gangs).joined
    want = _joined_node_by_node(nodes, instances, gangs)
    assert [(k, list(b.items())) for k, b in got.buckets.items()] == [(k, list(b.items())) for k, b in want.buckets.items()]
    assert (got.total, got.max_free) == (want.total, want.max_free)
