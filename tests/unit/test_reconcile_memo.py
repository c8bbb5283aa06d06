"""burst/reconcile_memo.py: the memo answers exactly what reconcile_instance answers, and skips
the call only for the same objects that answered NOTHING last tick."""

from __future__ import annotations

import dataclasses
import itertools
from types import SimpleNamespace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import burst.reconcile_memo as memo_mod
from burst.domain import Instance, InstanceState
from burst.reconcile_memo import ReconcileMemo
from policies.reconcile import NOTHING, reconcile_instance
from tests.policies.test_reconcile import (
    AGES,
    CLOUDS,
    NODES,
    NOW,
    SETTINGS,
    STATES,
    cloud_instance,
    instance,
    node,
)

# A fixed pool of objects, so a drawn sequence repeats the very same objects (as the simulator
# hands them back) and also brings equal-but-new ones (as a live adapter would).
INSTANCES: list[Instance] = [
    dataclasses.replace(instance(s, age), id=iid, idle_since=idle)
    for s, age, iid, idle in itertools.product(STATES, AGES.values(), ("i-1", "i-2"), (None, NOW - 900.0))
]
CLOUD_OBJS = [cloud_instance(k) for k in CLOUDS]
NODE_OBJS = [node(k) for k in NODES]

step = st.tuples(
    st.integers(0, len(INSTANCES) - 1),
    st.integers(0, len(CLOUD_OBJS) - 1),
    st.integers(0, len(NODE_OBJS) - 1),
    st.booleans(),  # observed
    st.booleans(),  # jobs_pending
    st.booleans(),  # a copy (equal, not identical) of the instance row
)
ticks = st.lists(st.tuples(st.floats(0.0, 5000.0), st.lists(step, max_size=6)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(ticks)
def test_memo_answers_what_reconcile_instance_answers(seq: list[tuple[float, list[tuple[int, int, int, bool, bool, bool]]]]) -> None:
    memo = ReconcileMemo()
    now = NOW
    for dt, steps in seq:
        now += dt
        memo.start()
        for i, c, n, observed, pending, copy in steps:
            inst = dataclasses.replace(INSTANCES[i]) if copy else INSTANCES[i]
            got = memo.decide(inst, CLOUD_OBJS[c], NODE_OBJS[n], now, SETTINGS, observed=observed, jobs_pending=pending)
            want = reconcile_instance(inst, CLOUD_OBJS[c], NODE_OBJS[n], now, SETTINGS, observed=observed, jobs_pending=pending)
            assert got == want


def test_the_same_quiet_objects_skip_the_call_and_anything_new_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted(*a: object, **kw: object) -> object:
        calls.append("call")
        return reconcile_instance(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(memo_mod, "reconcile_instance", counted)
    busy = instance(InstanceState.JOINED, 1200.0)  # joined, busy node, not idle: NOTHING
    ci, n = cloud_instance("running"), node("busy")
    memo = ReconcileMemo()
    for t in range(3):
        memo.start()
        assert memo.decide(busy, ci, n, NOW + t, SETTINGS, observed=True, jobs_pending=True) is NOTHING
    assert len(calls) == 1  # asked once, then remembered
    memo.start()
    assert memo.decide(busy, ci, node("busy"), NOW, SETTINGS, observed=True, jobs_pending=True) is NOTHING
    assert len(calls) == 2  # a new node object: asked again
    memo.start()
    memo.start()  # a tick that did not decide it: forgotten
    memo.decide(busy, ci, n, NOW, SETTINGS, observed=True, jobs_pending=True)
    assert len(calls) == 3


POOL_BY_ID = {iid: [i for i in INSTANCES if i.id == iid] for iid in ("i-1", "i-2")}
tick_inputs = st.lists(
    st.tuples(
        st.floats(0.0, 5000.0),
        st.dictionaries(  # instance id -> (pool index, cloud, node, a copy of the row)
            st.sampled_from(sorted(POOL_BY_ID)),
            st.tuples(st.integers(0, len(POOL_BY_ID["i-1"]) - 1), st.integers(0, len(CLOUD_OBJS) - 1),
                      st.integers(0, len(NODE_OBJS) - 1), st.booleans()),
        ),
        st.booleans(),  # the cloud unobserved
        st.booleans(),  # the planned-for job still pending
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(tick_inputs)
def test_decide_all_answers_what_reconcile_instance_answers_per_instance(
    seq: list[tuple[float, dict[str, tuple[int, int, int, bool]], bool, bool]],
) -> None:
    memo = ReconcileMemo()
    now = NOW
    for dt, picks, unobserved, job_pending in seq:
        now += dt
        live, cloud, nodes = [], {}, {}
        for iid, (k, c, n, copy) in sorted(picks.items()):
            inst = POOL_BY_ID[iid][k]
            live.append(dataclasses.replace(inst) if copy else inst)
            ci, nd = CLOUD_OBJS[c], NODE_OBJS[n]
            if ci is not None:
                cloud[iid] = ci
            if nd is not None:
                nodes[iid] = nd
        pending = [SimpleNamespace(id="job-1")] if job_pending else [SimpleNamespace(id="job-9")]
        skip = {"aws"} if unobserved else set()
        got = memo.decide_all(live, cloud, nodes, skip, pending, now, SETTINGS)  # type: ignore[arg-type]
        want = []
        for inst in live:
            d = reconcile_instance(inst, cloud.get(inst.id), nodes.get(inst.id), now, SETTINGS,
                                   observed=not unobserved, jobs_pending=job_pending or inst.state is not InstanceState.PLANNED)
            if d is not NOTHING:
                want.append((inst, d))
        assert got == want


FLEET = [dataclasses.replace(i, id=f"f-{k}") for k, i in enumerate(INSTANCES[::3])]
fleet_ticks = st.lists(
    st.tuples(
        st.sampled_from((0.0, 30.0, 600.0)),
        st.sampled_from((True, True, True, False)),  # the same live objects as the last tick (decide_all's fast path)
        # live, when not the same: (instance, its listing (mostly running), its node)
        st.lists(st.tuples(st.integers(0, len(FLEET) - 1), st.sampled_from((2, 2, 2, 1, 0)), st.integers(0, len(NODE_OBJS) - 1)),
                 unique_by=lambda t: t[0], min_size=1, max_size=4),
        st.dictionaries(st.integers(0, 3), st.tuples(st.integers(0, len(CLOUD_OBJS) - 1), st.integers(0, len(NODE_OBJS) - 1),
                                                     st.sampled_from(("cloud", "node", "both"))),
                        min_size=1, max_size=2),  # positions whose listing, node or both change
        st.booleans(),  # the cloud unobserved
    ),
    max_size=14,
)


@settings(max_examples=500, deadline=None)
@given(fleet_ticks)
# a joined instance on a busy node (quiet), then its node only turns idle / its listing only ends
@example([(0.0, False, [(8, 2, 2)], {}, False), (30.0, True, [], {0: (2, 1, "node")}, False)])
@example([(0.0, False, [(8, 2, 2)], {}, False), (30.0, True, [], {0: (3, 2, "cloud")}, False)])
def test_decide_all_over_the_same_live_objects_answers_per_instance(
    seq: list[tuple[float, bool, list[tuple[int, int, int]], dict[int, tuple[int, int, str]], bool]],
) -> None:
    """Ticks that hand back the very same live instances (the simulator's store does while
    nothing changed), with some listings and nodes replaced: decide_all answers exactly what
    reconcile_instance answers per instance, tick after tick."""
    memo = ReconcileMemo()
    now = NOW
    live: list[Instance] = []
    clouds: list[object] = []
    nodes: list[object] = []
    for dt, same, picks, changes, unobserved in seq:
        now += dt
        if not same:
            live = [FLEET[k] for k, _, _ in picks]
            clouds = [CLOUD_OBJS[c] for _, c, _ in picks]
            nodes = [NODE_OBJS[n] for _, _, n in picks]
        else:
            live = list(live)  # a new list of the same objects, as the store returns
        for pos, (c, n, what) in changes.items():
            if pos < len(live):
                if what != "node":
                    clouds[pos] = CLOUD_OBJS[c]
                if what != "cloud":
                    nodes[pos] = NODE_OBJS[n]
        cloud = {i.id: c for i, c in zip(live, clouds, strict=True) if c is not None}
        by_node = {i.id: n for i, n in zip(live, nodes, strict=True) if n is not None}
        skip = {"aws"} if unobserved else set()
        got = memo.decide_all(live, cloud, by_node, skip, [SimpleNamespace(id="job-1")], now, SETTINGS)  # type: ignore[arg-type]
        want = []
        for inst in live:
            d = reconcile_instance(inst, cloud.get(inst.id), by_node.get(inst.id), now, SETTINGS,
                                   observed=not unobserved, jobs_pending=True if inst.state is not InstanceState.PLANNED else "job-1" in inst.for_jobs)
            if d is not NOTHING:
                want.append((inst, d))
        assert got == want
