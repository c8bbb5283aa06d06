"""policies/spot.py: the notice reason, the notice plan, capacity that is leaving, and the price of
reclaims in offer selection. Pure, table-driven."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from burst.domain import Instance, InstanceState, Job, JobState, Launch, Market, Node, Offer, Purpose
from policies import PolicyConfig, decide
from policies.model import OverflowConfig, SelectionConfig, Snapshot
from policies.overflow import base_threshold, select_overflow, threshold_for
from policies.selection import Context, Need, rank
from policies.spot import (
    CheckpointStep,
    NoticeSettings,
    ReclaimHistory,
    RequeueStep,
    SpotHold,
    held_view,
    leaving_view,
    notice_reason,
    noticed,
    parse_notice,
    plan_notices,
    plan_releases,
    reclaim_factor,
    reclaim_factors,
)

T0 = 1_700_000_000.0


def _inst(iid: str, state: InstanceState = InstanceState.JOINED) -> Instance:
    return Instance(iid, "aws", "us-east-1", "", "p4d", Market.SPOT, Purpose.OVERFLOW, 8, "A100", 10.0, state=state,
                    node_name=iid)


def _node(iid: str, reason: str = "", schedulable: bool = False) -> Node:
    return Node(iid, 8, 8, "A100", schedulable=schedulable, instance_id=iid, labels={"reason": reason} if reason else {})


def _job(jid: str, node: str, submit: float, prio: int = 0) -> Job:
    return Job(jid, 4, submit, JobState.RUNNING, start_time=submit + 10, node_names=(node,), priority=prio)


def test_reason_round_trip_and_other_reasons() -> None:
    assert notice_reason(T0) == "burst:spot-reclaim at 2023-11-14T22:13:20Z"
    assert parse_notice(notice_reason(T0)) == T0
    assert datetime.fromtimestamp(parse_notice("burst:spot-reclaim at 2024-02-29T23:59:59Z") or 0, UTC).day == 29
    for other in ("", "idle for 2.0 min", "burst:removing", "burst:spot-reclaim at soon", "burst:spot-reclaim at 2024-13-01T00:00:00Z"):
        assert parse_notice(other) is None


def test_noticed_needs_a_drained_burst_node_with_the_reason() -> None:
    r = notice_reason(T0 + 120)
    nodes = [_node("a", r), _node("b", r, schedulable=True), Node("gpu01", 8, labels={"reason": r}, schedulable=False),
             _node("c", "idle for 1 min")]
    assert noticed(nodes) == {"a": T0 + 120}


@pytest.mark.parametrize(
    "state,now,expect",
    [
        (InstanceState.JOINED, T0, ["checkpoint"]),  # first sight, well before the reclaim
        (InstanceState.DRAINING, T0, []),  # already checkpointed; requeue not due
        (InstanceState.DRAINING, T0 + 120 - 45, ["requeue"]),  # margin reached
        (InstanceState.JOINED, T0 + 100, ["checkpoint", "requeue"]),  # seen late: both at once
        (InstanceState.TERMINATING, T0 + 100, []),
    ],
)
def test_plan_notices(state: InstanceState, now: float, expect: list[str]) -> None:
    inst = _inst("a", state)
    nodes = [_node("a", notice_reason(T0 + 120))]
    running = [_job("j2", "a", T0 - 50, prio=7), _job("j1", "a", T0 - 100, prio=9), _job("x", "other", T0)]
    plan = plan_notices(now, [inst], nodes, running, NoticeSettings(requeue_margin_s=45))
    kinds = ["checkpoint" if isinstance(s, CheckpointStep) else "requeue" for s in plan.steps]
    assert kinds == expect
    for s in plan.steps:
        assert s.job_ids == ("j1", "j2")  # oldest first: the line's order
        if isinstance(s, RequeueStep):
            assert s.priorities == (9, 7)
    if state is InstanceState.DRAINING and not expect:
        assert plan.wake_at == T0 + 120 - 45


def test_nothing_running_means_no_requeue_and_disabled_means_nothing() -> None:
    nodes = [_node("a", notice_reason(T0 + 120))]
    assert plan_notices(T0 + 100, [_inst("a", InstanceState.DRAINING)], nodes, []).steps == ()
    assert plan_notices(T0, [_inst("a")], nodes, [], NoticeSettings(enabled=False)).steps == ()


def test_leaving_view_hides_noticed_capacity() -> None:
    nodes = (_node("a", notice_reason(T0)), _node("b", "", schedulable=True), Node("gpu01", 8))
    insts = (_inst("a"), _inst("b"))
    n, i = leaving_view(nodes, insts)
    assert [x.name for x in n] == ["b", "gpu01"] and [x.id for x in i] == ["b"]
    assert leaving_view(nodes[1:], insts) == (nodes[1:], insts)


def test_reclaim_factor_grows_with_observed_reclaims() -> None:
    assert reclaim_factor(ReclaimHistory()) == pytest.approx(1 / (1 - (1 / 72) * 0.35))
    assert reclaim_factor(ReclaimHistory(400, 30.0)) == 1000.0  # reclaimed faster than it recovers
    assert reclaim_factor(ReclaimHistory(10, 8.0)) > reclaim_factor(ReclaimHistory(1, 80.0)) > 1.0


def _offer(market: Market, price: float, itype: str = "p4d") -> Offer:
    return Offer("aws", itype, "us-east-1", "use1-az1", "A100", 8, 40.0, price, market)


def test_selection_prefers_spot_until_its_reclaims_make_it_dearer_than_on_demand() -> None:
    od, spot = _offer(Market.ON_DEMAND, 32.0), _offer(Market.SPOT, 12.0)
    need = Need(8, allow_spot=True)
    quiet = reclaim_factors([od, spot], {})
    assert set(quiet) == {spot.key}  # factors for spot offers only
    assert rank([od, spot], need, Context(T0, {}, frozenset(), spot_factor=quiet))[0] is spot
    # reclaimed every ~15 min: each reclaim costs lost work + reboot, so spot now costs more
    stormy = reclaim_factors([od, spot], {spot.key: ReclaimHistory(400, 100.0)})
    assert 12.0 * stormy[spot.key] > 32.0
    assert rank([od, spot], need, Context(T0, {}, frozenset(), spot_factor=stormy))[0] is od
    # without factors, the flat discount rule of before applies unchanged
    assert rank([od, spot], need, Context(T0, {}, frozenset()))[0] is spot


def _repl(iid: str, state: InstanceState, jobs: tuple[str, ...] = ("j1",), created: float = T0) -> Instance:
    return dataclasses.replace(_inst(iid, state), for_jobs=jobs, created_at=created)


HOLD = SpotHold("j1", "old", T0, 7)
S = NoticeSettings(hold_for_replacement_s=900.0)


@pytest.mark.parametrize(
    ("now", "instances", "held", "released", "why"),
    [
        # replacement booting: keep holding (wake at the deadline)
        (T0 + 60, [_repl("r1", InstanceState.LAUNCHING)], {"j1"}, False, ""),
        # replacement joined: release
        (T0 + 300, [_repl("r1", InstanceState.JOINED)], {"j1"}, True, "replacement r1 joined"),
        # a gang's replacements: the first to join releases it (it keeps its other members)
        (T0 + 300, [_repl("r1", InstanceState.RUNNING), _repl("r2", InstanceState.LAUNCHING)], {"j1"}, False, ""),
        (T0 + 300, [_repl("r1", InstanceState.JOINED), _repl("r2", InstanceState.RUNNING)], {"j1"}, True, "r1 joined"),
        (T0 + 300, [_repl("r1", InstanceState.JOINED), _repl("r2", InstanceState.JOINED)], {"j1"}, True, "r1, r2 joined"),
        # the instance it was requeued off, or one launched before the hold, is no replacement
        (T0 + 30, [_repl("old", InstanceState.DRAINING), _repl("r0", InstanceState.JOINED, created=T0 - 5)], {"j1"}, True,
         "no replacement was launched"),
        # the hold's own tick: the decision has not run yet
        (T0, [], {"j1"}, False, ""),
        # no replacement after the decision: back to the queue
        (T0 + 30, [_repl("r1", InstanceState.JOINED, jobs=("other",))], {"j1"}, True, "no replacement was launched"),
        # the replacement never joins: released at the deadline
        (T0 + 900, [_repl("r1", InstanceState.RUNNING)], {"j1"}, True, "held 900s"),
    ],
)
def test_plan_releases(now: float, instances: list[Instance], held: set[str], released: bool, why: str) -> None:
    plan = plan_releases(now, [HOLD], instances, held, S)
    assert plan.forget == ()
    if released:
        (step,) = plan.steps
        assert step.job_ids == ("j1",) and step.priorities == (7,) and step.instance_id == "old" and why in step.reason
        assert plan.wake_at is None
    else:
        assert plan.steps == () and plan.wake_at == T0 + 900


def test_plan_releases_forgets_jobs_the_queue_no_longer_holds() -> None:
    plan = plan_releases(T0 + 60, [HOLD], [_repl("r1", InstanceState.JOINED)], {"someone-else"}, S)
    assert plan.steps == () and plan.forget == ("j1",) and plan.wake_at is None


def test_held_view_keeps_a_younger_jobs_in_flight_instance_its_own() -> None:
    """A requeued job (old submit time, held) and a younger job that waited its threshold and has
    an instance booting for it: overflow hands capacity out in submission order, so without the
    view the requeued job takes the younger job's instance and the younger one needs a new boot
    (it misses the target); with it, the younger keeps its instance and the requeued job bursts."""
    cfg = OverflowConfig()
    base = base_threshold(cfg, 240.0, 30.0)
    now = T0
    old = Job("old", 8, now - 3 * 3600, JobState.HELD, gpus_per_node=8, may_burst=True)
    young = Job("young", 8, now - base - 60, gpus_per_node=8, may_burst=True)
    booting = dataclasses.replace(_inst("i-young", InstanceState.LAUNCHING), for_jobs=("young",), node_name="")

    def burst(pending: tuple[Job, ...]) -> list[str]:
        return [j.id for j in select_overflow(now, pending, (), (booting,), cfg, boot_estimate_s=240.0, tick_s=30.0).burst]

    assert burst((old, young)) == ["young"]  # the requeued job took the young one's instance
    shown = held_view((old, young), {"old"}, now, lambda j: threshold_for(j, cfg, base), 30.0)
    assert [j.id for j in shown] == ["old", "young"] and shown[1] is young
    assert shown[0].submit_time == now - base - 30.0
    assert burst(shown) == ["old"]
    assert held_view((old, young), set(), now, lambda j: base, 30.0) == (old, young)


# ---- the threshold when capacity can be reclaimed before it serves its job ------------------------


def test_spot_threshold_leaves_the_wait_target_room_for_a_second_boot() -> None:
    """A spot launch can be reclaimed before it joins (no notice: its agent is not running) or its
    job requeued off it and its place taken: one more boot. So when launches may be spot, a job
    bursts one boot earlier, and what is left of its wait target when it bursts covers two boots
    (plus the tick and the safety margin). A job that has waited between the two thresholds
    bursts only when spot is possible. An explicit ``wait_threshold_s`` is kept as set."""
    cfg = OverflowConfig()
    boot, tick = 240.0, 30.0
    od, sp = base_threshold(cfg, boot, tick), base_threshold(cfg, boot, tick, spot=True)
    assert od - sp == boot
    assert sp + 2 * boot + tick + cfg.safety_margin_s == cfg.wait_target_s
    now = T0
    between = Job("between", 8, now - sp - 10.0, gpus_per_node=8, may_burst=True)

    def burst(spot: bool) -> tuple[list[str], int]:
        r = select_overflow(now, (between,), (), (), cfg, boot_estimate_s=boot, tick_s=tick, spot=spot)
        return [j.id for j in r.burst], r.waiting

    assert burst(spot=True) == (["between"], 0)
    assert burst(spot=False) == ([], 1)
    fixed = OverflowConfig(wait_threshold_s=60.0)
    assert base_threshold(fixed, boot, tick, spot=True) == base_threshold(fixed, boot, tick) == 60.0


@pytest.mark.parametrize(
    ("allow_spot", "markets", "launches"),
    [
        (True, (Market.ON_DEMAND, Market.SPOT), 1),  # a spot launch is possible: burst a boot earlier
        (False, (Market.ON_DEMAND, Market.SPOT), 0),  # spot not allowed: the on-demand threshold
        (True, (Market.ON_DEMAND,), 0),  # allowed, but nothing offered on spot: nothing to reclaim
    ],
)
def test_decide_bursts_a_boot_earlier_only_when_a_launch_may_be_spot(
    allow_spot: bool, markets: tuple[Market, ...], launches: int,
) -> None:
    cfg = PolicyConfig(name="t", selection=SelectionConfig(allow_spot=allow_spot))
    sp = base_threshold(cfg.overflow, None, cfg.tick_interval_s, spot=True)
    job = Job("j", 8, T0 - sp - 10.0, gpus_per_node=8, may_burst=True)
    offers = tuple(_offer(m, 32.0 if m is Market.ON_DEMAND else 12.0, f"p4d-{m}") for m in markets)
    plan = decide(Snapshot(T0, "c", (job,), (), (), (), offers), cfg)
    assert sum(isinstance(a, Launch) for a in plan.actions) == launches
