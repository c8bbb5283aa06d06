"""The pools memo (policies/pools_memo.py) answers exactly as build_pools, tick after tick: random
worlds, then random changes (a node's use, schedulability or hold label; an instance row
replaced; the gang arguments; a node more or fewer), each answer checked field by field against
a fresh build_pools, bucket key order included (first fit walks the keys in that order)."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.domain import GANG_HOLD_LABEL, Instance, InstanceState, Node
from policies.overflow import Pools, build_pools
from policies.packing import SlotPool
from policies.pools_memo import PoolsMemo
from tests.policies.helpers import cloud_node, instance
from tests.policies.test_overflow_fast_path import worlds


def _pool(p: SlotPool) -> object:
    return ([(k, list(b.items())) for k, b in p.buckets.items()], sorted(p.total.items()), p.max_free)


def _same(got: Pools, want: Pools) -> None:
    for name in ("onprem", "joined", "flying"):
        assert _pool(getattr(got, name)) == _pool(getattr(want, name)), name
    assert list(got.gang_own.items()) == list(want.gang_own.items())
    assert list(got.gang_joined.items()) == list(want.gang_joined.items())
    assert (got.reserved, got.stray_holds) == (want.reserved, want.stray_holds)


def _args(pending: tuple, instances: tuple[Instance, ...], running: tuple) -> tuple[frozenset[str], ...]:  # type: ignore[type-arg]
    """The gang arguments as select_overflow computes them."""
    asked = {i.for_jobs[0] for i in instances if i.for_jobs}
    gang_asked = {i.for_jobs[0] for i in instances if i.for_jobs and i.gang_id}
    hits = [j for j in pending if j.id in gang_asked]
    return (frozenset(j.id for j in hits if j.is_gang), frozenset(j.id for j in hits),
            frozenset(asked.intersection(r.id for r in running)))


def onprem_node(name: str, *, free: int, model: str = "A100") -> Node:
    return Node(name, 8, 8 - free, model, running_jobs=1 if free < 8 else 0)


@st.composite
def _changed(draw: st.DrawFn, n: Node) -> Node:
    """The node at a position, as a later tick may show it (often the very same object)."""
    what = draw(st.sampled_from(("same", "same", "used", "cordon", "hold", "copy")))
    if what == "used":
        used = draw(st.integers(0, n.gpus))
        return dataclasses.replace(n, gpus_used=used, running_jobs=1 if used else 0)
    if what == "cordon":
        return dataclasses.replace(n, schedulable=not n.schedulable)
    if what == "hold":
        labels = {} if GANG_HOLD_LABEL in n.labels else {GANG_HOLD_LABEL: "1"}
        return dataclasses.replace(n, labels=labels)
    if what == "copy":
        return dataclasses.replace(n)  # equal, not the same object
    return n


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data())
def test_memo_answers_as_build_pools_tick_after_tick(world, data) -> None:  # type: ignore[no-untyped-def]
    pending, nodes, instances, running, _cfg = world
    memo = PoolsMemo()
    args = _args(pending, instances, running)
    for _ in range(data.draw(st.integers(1, 8))):
        got = memo.build(nodes, instances, *args)
        _same(got, build_pools(nodes, instances, *args))
        # the overflow pass takes from the pools it is handed: the next answer must not see that
        for p in (got.onprem, got.joined, got.flying):
            p.take(1)
        step = data.draw(st.sampled_from(("nodes", "nodes", "nodes", "instance", "args", "grow", "shrink")))
        if step == "nodes":
            nodes = tuple(data.draw(_changed(n)) for n in nodes)
        elif step == "instance" and instances:
            k = data.draw(st.integers(0, len(instances) - 1))
            state = data.draw(st.sampled_from(list(InstanceState)))
            instances = instances[:k] + (dataclasses.replace(instances[k], state=state),) + instances[k + 1:]
        elif step == "args":
            args = (data.draw(st.sampled_from((frozenset(), args[0]))), args[1], args[2])
        elif step == "grow":
            nodes = (*nodes, onprem_node(f"x{len(nodes)}", free=data.draw(st.integers(0, 8))))
        elif step == "shrink" and nodes:
            nodes = nodes[:-1]


def test_a_changed_onprem_node_is_updated_without_a_rebuild() -> None:
    """The point of the memo: one node changed, no walk over the others (and still the same
    pools; an on-prem model that first occurs earlier now comes first in its bucket)."""
    inst = instance("i1", InstanceState.JOINED)
    nodes = (onprem_node("a", free=0, model="H100"), onprem_node("b", free=8, model="A100"),
             onprem_node("c", free=8, model="H100"), cloud_node(inst))
    memo = PoolsMemo()
    memo.build(nodes, (inst,))
    assert memo.rebuilds == 1
    later = (onprem_node("a", free=8, model="H100"), *nodes[1:])
    got = memo.build(later, (inst,))
    assert memo.rebuilds == 1
    _same(got, build_pools(later, (inst,)))
    assert [k for k in got.onprem.buckets[8]] == [("onprem", "H100"), ("onprem", "A100")]
    # the instance row replaced (a new object): rebuilt
    memo.build(later, (dataclasses.replace(inst),))
    assert memo.rebuilds == 2
