"""The scale-in memo (policies/scale_in_memo.py) answers exactly as decide_scale_in, tick after
tick: random fleets (every state, purpose, idle or busy node, with or without a node), then
random changes (an instance row or a node replaced, the clock moved either way, across join
deadlines and idle timeouts), each answer checked against a fresh decide_scale_in."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.domain import Instance, InstanceState, Node, Purpose
from policies.model import ScaleInConfig
from policies.scale_in import decide_scale_in, nodes_by_instance
from policies.scale_in_memo import ScaleInMemo
from tests.policies.helpers import NOW, cloud_node, instance

CFG = ScaleInConfig()
STATES = (InstanceState.PLANNED, InstanceState.LAUNCHING, InstanceState.RUNNING, InstanceState.JOINED,
          InstanceState.DRAINING)
# Around the deadlines that matter: launched an hour ago, idle for a few minutes.
TIMES = st.sampled_from((0.0, 60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)).map(lambda d: NOW - 3600 + d)


@st.composite
def _inst(draw: st.DrawFn, k: int) -> tuple[Instance, Node | None]:
    state = draw(st.sampled_from(STATES))
    purpose = draw(st.sampled_from((Purpose.OVERFLOW, Purpose.OVERFLOW, Purpose.ON_DEMAND)))
    idle = draw(st.one_of(st.none(), TIMES))
    launched = draw(st.one_of(st.none(), TIMES))
    inst = instance(f"i{k}", state, idle_since=idle, launched_at=launched, purpose=purpose)
    node = None
    if draw(st.booleans()):
        used = draw(st.sampled_from((0, 0, 4)))
        node = cloud_node(inst, used=used, schedulable=draw(st.booleans()))
    return inst, node


def _check(memo: ScaleInMemo, now: float, instances: tuple[Instance, ...], nodes: tuple[Node, ...]) -> None:
    by = nodes_by_instance(nodes)
    assert memo.decide(now, instances, by, CFG, 30.0) == decide_scale_in(now, instances, by, CFG, 30.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 100), max_size=8).flatmap(lambda ks: st.tuples(*(_inst(k) for k in range(len(ks))))),
       st.data())
def test_memo_answers_as_decide_scale_in_tick_after_tick(fleet, data) -> None:  # type: ignore[no-untyped-def]
    instances = tuple(i for i, _ in fleet)
    nodes = tuple(n for _, n in fleet if n is not None)
    memo = ScaleInMemo()
    for _ in range(data.draw(st.integers(1, 8))):
        _check(memo, data.draw(TIMES) + data.draw(st.sampled_from((0.0, 1.0, -1.0))), instances, nodes)
        step = data.draw(st.sampled_from(("time", "time", "instance", "node", "fewer")))
        if step == "instance" and instances:
            k = data.draw(st.integers(0, len(instances) - 1))
            new = dataclasses.replace(instances[k], state=data.draw(st.sampled_from(STATES)),
                                      idle_since=data.draw(st.one_of(st.none(), TIMES)))
            instances = instances[:k] + (new,) + instances[k + 1:]
        elif step == "node" and nodes:
            k = data.draw(st.integers(0, len(nodes) - 1))
            used = data.draw(st.sampled_from((0, 4, 8)))
            nodes = nodes[:k] + (dataclasses.replace(nodes[k], gpus_used=used, running_jobs=1 if used else 0),) + nodes[k + 1:]
        elif step == "fewer" and instances:
            instances = instances[1:]


def test_a_quiet_fleet_is_answered_without_the_full_pass() -> None:
    """Busy joined nodes and one idle one short of its timeout: no action, woken at the timeout,
    and the next tick (same objects, clock moved, still short of it) skips the pass."""
    busy = instance("a", InstanceState.JOINED, idle_since=None)
    idle = instance("b", InstanceState.JOINED, idle_since=NOW - 10)
    nodes = (cloud_node(busy, used=8), cloud_node(idle))
    memo = ScaleInMemo()
    _check(memo, NOW, (busy, idle), nodes)
    _check(memo, NOW + 20, (busy, idle), nodes)
    assert memo.skipped == 2
    # past the idle timeout: the full pass drains it
    late = NOW - 10 + CFG.idle_timeout_s
    got = memo.decide(late, (busy, idle), nodes_by_instance(nodes), CFG, 30.0)
    assert [a.instance_id for a in got.actions] == ["b"] and memo.skipped == 2
