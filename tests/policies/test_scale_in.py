"""policies/scale_in.py: idle timeout, drain, terminate, join timeout; busy nodes are never touched."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.domain import Drain, InstanceState, Launch, Purpose, Terminate, Undrain
from policies import decide
from policies.scale_in import decide_scale_in
from tests.policies.helpers import (
    A100_8_AZ1,
    A100_8_WEST,
    CFG,
    MIN,
    NOW,
    SI,
    cloud_node,
    full_cluster,
    instance,
    job,
    snap,
)

J, D = InstanceState.JOINED, InstanceState.DRAINING

# (id, state, idle for (None: busy), node present, expected action type or None, expected wake)
CASES = [
    ("joined-idle-below-timeout", J, 60.0, True, None, NOW - 60 + 4 * MIN),
    ("joined-idle-at-timeout", J, 4 * MIN, True, Drain, NOW + 30),
    ("joined-idle-past-timeout", J, 10 * MIN, True, Drain, NOW + 30),
    ("joined-busy", J, None, True, None, None),
    ("draining-idle", D, 10 * MIN, True, Terminate, None),
    ("draining-busy", D, None, True, None, NOW + 30),
    ("draining-node-gone", D, 10 * MIN, False, Terminate, None),
]


@pytest.mark.parametrize(("state", "idle_for", "has_node", "kind", "wake"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_scale_in_table(state, idle_for, has_node, kind, wake) -> None:  # type: ignore[no-untyped-def]
    busy = idle_for is None
    inst = instance("i", state, idle_since=None if busy else NOW - idle_for)
    nodes = {"i": cloud_node(inst, used=4 if busy else 0, schedulable=state is J)} if has_node else {}
    r = decide_scale_in(NOW, (inst,), nodes, SI, 30.0)
    assert [type(a) for a in r.actions] == ([kind] if kind else [])
    assert all(a.instance_id == "i" and a.reason for a in r.actions)
    assert r.wake_at == wake


def test_busy_node_with_stale_idle_since_is_not_drained() -> None:
    # idle_since left over from before a job landed: the node's use is what counts
    inst = instance("i", J, idle_since=NOW - 3600)
    r = decide_scale_in(NOW, (inst,), {"i": cloud_node(inst, used=0, jobs=1)}, SI, 30.0)
    assert r.actions == ()


@pytest.mark.parametrize("purpose", [Purpose.ON_DEMAND, Purpose.GRAND_CHALLENGE])
def test_only_overflow_instances_are_scaled_in_for_idleness(purpose: Purpose) -> None:
    inst = instance("i", J, idle_since=NOW - 3600, purpose=purpose)
    r = decide_scale_in(NOW, (inst,), {"i": cloud_node(inst)}, SI, 30.0)
    assert r.actions == ()


@pytest.mark.parametrize(("state", "launched_ago", "expect"), [
    (InstanceState.LAUNCHING, 5 * MIN, None),
    (InstanceState.LAUNCHING, 20 * MIN, Terminate),
    (InstanceState.RUNNING, 25 * MIN, Terminate),
    (InstanceState.PLANNED, 60 * MIN, None),  # recovery owns PLANNED intents
])
def test_join_timeout(state: InstanceState, launched_ago: float, expect: type | None) -> None:
    inst = instance("i", state, launched_at=NOW - launched_ago)
    r = decide_scale_in(NOW, (inst,), {}, SI, 30.0)
    assert [type(a) for a in r.actions] == ([expect] if expect else [])
    if expect is None and state is InstanceState.LAUNCHING:
        assert r.wake_at == NOW - launched_ago + 20 * MIN


def test_launching_instance_whose_node_appeared_is_left_alone() -> None:
    inst = instance("i", InstanceState.LAUNCHING, launched_at=NOW - 3 * 3600)
    r = decide_scale_in(NOW, (inst,), {"i": cloud_node(inst)}, SI, 30.0)
    assert r.actions == ()


def test_drain_is_held_back_while_pending_work_is_counted_on_the_node() -> None:
    inst = instance("i", J, idle_since=NOW - 10 * MIN)
    base = [*full_cluster(), cloud_node(inst)]
    p = decide(snap([], base, [inst]), CFG)
    assert [type(a) for a in p.actions] == [Drain]
    # a pending burstable 8-GPU job (below its threshold) will land on the idle burst node
    p = decide(snap([job("a", 8, 1 * MIN)], base, [inst]), CFG)
    assert p.of(Drain) == []


def test_only_the_idle_nodes_pending_work_counts_on_are_kept() -> None:
    # Three idle 8-GPU nodes of one kind and one idle node in another region; one pending 8-GPU
    # job will land on one of the three. Exactly that one is kept (the most recently idle); the
    # others drain as usual, so a trickle of work in one place never pins the whole fleet.
    a = instance("a", J, idle_since=NOW - 30 * MIN)
    b = instance("b", J, idle_since=NOW - 20 * MIN)
    c = instance("c", J, idle_since=NOW - 10 * MIN)
    w = instance("w", J, A100_8_WEST, idle_since=NOW - 10 * MIN)
    fleet = [a, b, c, w]
    base = [*full_cluster(), *(cloud_node(i) for i in fleet)]
    assert sorted(d.instance_id for d in decide(snap([], base, fleet), CFG).of(Drain)) == ["a", "b", "c", "w"]
    p = decide(snap([job("p", 8, 1 * MIN)], base, fleet), CFG)
    assert sorted(d.instance_id for d in p.of(Drain)) == ["a", "b", "w"]
    # Two 4-GPU jobs share one node (best fit puts the second on the first's node).
    p = decide(snap([job("p", 4, 1 * MIN), job("q", 4, 1 * MIN)], base, fleet), CFG)
    assert sorted(d.instance_id for d in p.of(Drain)) == ["a", "b", "w"]
    # A partly busy node of the same kind takes the small job: every idle node drains.
    busy = instance("x", J, idle_since=None)
    p = decide(snap([job("p", 2, 1 * MIN)], [*base, cloud_node(busy, used=4)], [*fleet, busy]), CFG)
    assert sorted(d.instance_id for d in p.of(Drain)) == ["a", "b", "c", "w"]


# ---- property: a node with running work is never drained or terminated ----------------------

STATES = [InstanceState.LAUNCHING, InstanceState.RUNNING, InstanceState.JOINED, InstanceState.DRAINING, InstanceState.TERMINATING]


@st.composite
def fleets(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(0, 8))
    insts, nodes = [], []
    for k in range(n):
        state = draw(st.sampled_from(STATES))
        idle_since = draw(st.one_of(st.none(), st.floats(NOW - 7200, NOW)))
        launched = draw(st.floats(NOW - 7200, NOW))
        # on-demand instances are governed by their owner's time limit (policies/requests.py),
        # which may end them busy; the rule under test is about queue capacity
        purpose = draw(st.sampled_from([Purpose.OVERFLOW, Purpose.GRAND_CHALLENGE]))
        inst = instance(f"i{k}", state, A100_8_AZ1, idle_since=idle_since, launched_at=launched, purpose=purpose)
        insts.append(inst)
        if draw(st.booleans()):
            used = draw(st.integers(0, 8))
            jobs = draw(st.integers(0, 3)) if used == 0 else draw(st.integers(1, 3))
            nodes.append(cloud_node(inst, used=used, jobs=jobs, schedulable=draw(st.booleans())))
    pending = [job(f"p{k}", draw(st.sampled_from([1, 2, 4, 8, 16])), draw(st.floats(0, 7200)), nodes=1) for k in range(draw(st.integers(0, 4)))]
    pending = [p if p.gpus <= 8 else job(p.id, 16, NOW - p.submit_time, nodes=2) for p in pending]
    return insts, nodes, pending


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_busy_nodes_are_never_drained_or_terminated(fleet) -> None:  # type: ignore[no-untyped-def]
    insts, nodes, pending = fleet
    by_id = {n.instance_id: n for n in nodes}
    plan = decide(snap(pending, (*full_cluster(2), *nodes), insts), CFG)
    for a in plan.actions:
        if isinstance(a, Drain | Terminate):
            node = by_id.get(a.instance_id)
            assert node is None or node.idle, f"{type(a).__name__} of busy {a.instance_id}: {a.reason}"
    # and scale-in alone, with nothing held back by pending work
    r = decide_scale_in(NOW, tuple(insts), by_id, SI, 30.0)
    for a in r.actions:
        node = by_id.get(a.instance_id)
        assert node is None or node.idle
    assert r.wake_at is None or r.wake_at > NOW


def test_a_gang_counts_on_joined_nodes_only_when_they_hold_it_whole() -> None:
    # A 2-node gang and one idle joined burst node: the gang cannot start there, and a free node
    # is taken by the next job that fits the moment it joins, so the gang is not topped up around
    # it (that starved a 4-node gang for 45 min on a jittered B1 trace). The whole gang launches
    # together, and the idle node is drained as usual.
    inst = instance("i", J, idle_since=NOW - 10 * MIN)
    p = decide(snap([job("g", 16, 30 * MIN, nodes=2)], [*full_cluster(), cloud_node(inst)], [inst]), CFG)
    launches = p.of(Launch)
    assert len(launches) == 2 and len({lc.gang_id for lc in launches}) == 1
    assert [d.instance_id for d in p.of(Drain)] == ["i"]
    # Two idle joined nodes in one region hold the gang whole: nothing launches, nothing drains.
    other = instance("k", J, idle_since=NOW - 10 * MIN)
    p = decide(
        snap([job("g", 16, 30 * MIN, nodes=2)], [*full_cluster(), cloud_node(inst), cloud_node(other)], [inst, other]),
        CFG,
    )
    assert p.of(Launch) == [] and p.of(Drain) == []


def test_a_pending_gangs_own_joined_node_is_kept_and_counted() -> None:
    # Gang g's two instances joined a minute apart: one is up and idle (past the idle timeout,
    # say the second boots slowly), the other still boots. The gang counts on both; the idle one
    # is not drained and nothing more is launched for g.
    up = dataclasses.replace(instance("g1", J, idle_since=NOW - 10 * MIN), for_jobs=("g",), gang_id="grp")
    booting = dataclasses.replace(instance("g2", InstanceState.LAUNCHING, launched_at=NOW - 60), for_jobs=("g",), gang_id="grp")
    p = decide(snap([job("g", 16, 30 * MIN, nodes=2)], [*full_cluster(), cloud_node(up)], [up, booting]), CFG)
    assert p.of(Launch) == [] and p.of(Drain) == [] and p.of(Terminate) == []
    # once g has started elsewhere, the idle node is ordinary capacity again and drains
    running = [job("g", 16, 40 * MIN, nodes=2)]
    p = decide(snap([], [*full_cluster(), cloud_node(up)], [up, booting], running=running), CFG)
    assert [d.instance_id for d in p.of(Drain)] == ["g1"] and [t.instance_id for t in p.of(Terminate)] == ["g2"]


def test_an_idle_node_nobody_can_use_drains_even_with_the_drain_limit() -> None:
    # NotReady (or cordoned by an admin): it is not schedulable, so no pending work counts on
    # it, and it must still drain and go; before, the drain limit kept it forever.
    dead = instance("x", J, idle_since=NOW - 300 * MIN)
    p = decide(snap([], [*full_cluster(), cloud_node(dead, schedulable=False)], [dead]), CFG)
    assert [d.instance_id for d in p.of(Drain)] == ["x"]
    p = decide(snap([job("p", 8, 1 * MIN)], [*full_cluster(), cloud_node(dead, schedulable=False)], [dead]), CFG)
    assert [d.instance_id for d in p.of(Drain)] == ["x"]


def test_a_draining_node_that_is_not_ready_is_never_taken_back() -> None:
    d = instance("d", InstanceState.DRAINING, idle_since=NOW - 600)
    node = dataclasses.replace(cloud_node(d, schedulable=False), ready=False)
    p = decide(snap([job("a", 8, 60 * MIN)], [*full_cluster(), node], [d]), CFG)
    assert p.of(Undrain) == [] and [t.instance_id for t in p.of(Terminate)] == ["d"] and len(p.of(Launch)) == 1


def _member(iid: str, state: InstanceState = J, **kw):  # type: ignore[no-untyped-def]
    return dataclasses.replace(instance(iid, state, **kw), for_jobs=("g",), gang_id="grp")


def _held(inst):  # type: ignore[no-untyped-def]
    from burst.domain import GANG_HOLD_LABEL

    return dataclasses.replace(cloud_node(inst), labels={GANG_HOLD_LABEL: "grp"})


def test_gang_holds_are_lifted_together_once_every_member_has_joined() -> None:
    from burst.domain import Release

    gang = [job("g", 16, 30 * MIN, nodes=2)]
    g1 = _member("g1", idle_since=NOW - 10 * MIN)
    g2_booting = _member("g2", InstanceState.LAUNCHING, launched_at=NOW - 60)
    # one member up (held), one booting: nothing is released, launched or drained
    p = decide(snap(gang, [*full_cluster(), _held(g1)], [g1, g2_booting]), CFG)
    assert p.of(Release) == [] and p.of(Launch) == [] and p.of(Drain) == []
    # both up and held: both released in the same plan
    g2 = _member("g2", idle_since=NOW - 1 * MIN)
    p = decide(snap(gang, [*full_cluster(), _held(g1), _held(g2)], [g1, g2]), CFG)
    assert sorted(r.instance_id for r in p.of(Release)) == ["g1", "g2"] and p.of(Launch) == []
    # g1's hold already lifted (a retry after a partial failure): only g2's remains
    p = decide(snap(gang, [*full_cluster(), cloud_node(g1), _held(g2)], [g1, g2]), CFG)
    assert [r.instance_id for r in p.of(Release)] == ["g2"]


def test_a_held_node_is_nobodys_capacity_and_is_released_once_its_gang_runs_elsewhere() -> None:
    from burst.domain import Release

    g1 = _member("g1", idle_since=NOW - 1 * MIN)
    # g is not pending: the held node cannot take other work, so an 8-GPU job past its
    # threshold still gets an instance of its own
    p = decide(snap([job("p", 8, 30 * MIN)], [*full_cluster(), _held(g1)], [g1]), CFG)
    assert len(p.of(Launch)) == 1 and p.of(Release) == []
    # g runs elsewhere: the hold goes and the node is ordinary capacity again
    p = decide(snap([], [*full_cluster(), _held(g1)], [g1], running=[job("g", 16, 40 * MIN, nodes=2)]), CFG)
    assert [r.instance_id for r in p.of(Release)] == ["g1"]
