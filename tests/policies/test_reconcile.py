"""policies/reconcile.py: one decision per (store state x cloud state x scheduler node x age).

The table below lists every combination of the six live instance states, six things the cloud
can say (not listed, pending, running, terminated, failed, running with a spot interruption
notice), three node situations (none, idle, busy) and two ages (within or past the grace
periods: 180 s listing grace for a launch, 600 s for a PLANNED intent). Each cell names the
decision; :func:`expected` spells each name out in full (steps, reasons, fields, due time), so a
changed reason or step fails here. Edge cases follow the table.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from burst.domain import CloudInstance, CloudState, Instance, InstanceState, Market, Node, Purpose
from policies.reconcile import (
    BOOKS_CLOSED,
    NOTHING,
    BootSample,
    Decision,
    ReconcileSettings,
    RecoverPlanned,
    RemoveNode,
    RetryTerminate,
    SetIdleSince,
    reconcile_instance,
    transition,
)

NOW = 1_000_000.0
SETTINGS = ReconcileSettings(list_grace_s=180.0, planned_timeout_s=600.0, retry_s=30.0)
AGES = {"young": 60.0, "old": 1200.0}  # within / past both grace periods
CLOUD_LAUNCHED_AT = NOW - 55.0
NODE = "burst-i-1"

P, L, R, J, D, T = (
    InstanceState.PLANNED,
    InstanceState.LAUNCHING,
    InstanceState.RUNNING,
    InstanceState.JOINED,
    InstanceState.DRAINING,
    InstanceState.TERMINATING,
)
STATES = (P, L, R, J, D, T)
CLOUDS = ("absent", "pending", "running", "terminated", "failed", "interrupted")
NODES = ("none", "idle", "busy")

# (state, cloud, age) -> decision with node (none, idle, busy)
TABLE: dict[tuple[InstanceState, str, str], tuple[str, str, str]] = {
    # PLANNED: listed -> adopt; not listed (or gone) -> ask the cloud, abandon once stale
    (P, "absent", "young"): ("recover", "recover", "recover"),
    (P, "absent", "old"): ("abandon", "abandon", "abandon"),
    (P, "pending", "young"): ("adopt", "adopt", "adopt"),
    (P, "pending", "old"): ("adopt", "adopt", "adopt"),
    (P, "running", "young"): ("adopt", "adopt", "adopt"),
    (P, "running", "old"): ("adopt", "adopt", "adopt"),
    (P, "terminated", "young"): ("recover", "recover", "recover"),
    (P, "terminated", "old"): ("abandon", "abandon", "abandon"),
    (P, "failed", "young"): ("recover", "recover", "recover"),
    (P, "failed", "old"): ("abandon", "abandon", "abandon"),
    (P, "interrupted", "young"): ("adopt", "adopt", "adopt"),
    (P, "interrupted", "old"): ("adopt", "adopt", "adopt"),
    # LAUNCHING: not listed yet within the listing grace -> wait; a node -> joined
    (L, "absent", "young"): ("wait", "wait", "wait"),
    (L, "absent", "old"): ("lost", "lost", "lost"),
    (L, "pending", "young"): ("-", "joined-idle", "joined-busy"),
    (L, "pending", "old"): ("-", "joined-idle", "joined-busy"),
    (L, "running", "young"): ("running", "joined-idle", "joined-busy"),
    (L, "running", "old"): ("running", "joined-idle", "joined-busy"),
    (L, "terminated", "young"): ("lost", "lost", "lost"),
    (L, "terminated", "old"): ("lost", "lost", "lost"),
    (L, "failed", "young"): ("lost", "lost", "lost"),
    (L, "failed", "old"): ("lost", "lost", "lost"),
    (L, "interrupted", "young"): ("notice", "notice", "notice"),
    (L, "interrupted", "old"): ("notice", "notice", "notice"),
    # RUNNING: no listing grace (it was listed before)
    (R, "absent", "young"): ("lost", "lost", "lost"),
    (R, "absent", "old"): ("lost", "lost", "lost"),
    (R, "pending", "young"): ("-", "joined-idle", "joined-busy"),
    (R, "pending", "old"): ("-", "joined-idle", "joined-busy"),
    (R, "running", "young"): ("-", "joined-idle", "joined-busy"),
    (R, "running", "old"): ("-", "joined-idle", "joined-busy"),
    (R, "terminated", "young"): ("lost", "lost", "lost"),
    (R, "terminated", "old"): ("lost", "lost", "lost"),
    (R, "failed", "young"): ("lost", "lost", "lost"),
    (R, "failed", "old"): ("lost", "lost", "lost"),
    (R, "interrupted", "young"): ("notice", "notice", "notice"),
    (R, "interrupted", "old"): ("notice", "notice", "notice"),
    # JOINED: gone -> lost and its node removed; present -> idle tracking
    (J, "absent", "young"): ("lost+node", "lost+node", "lost+node"),
    (J, "absent", "old"): ("lost+node", "lost+node", "lost+node"),
    (J, "pending", "young"): ("-", "idle", "-"),
    (J, "pending", "old"): ("-", "idle", "-"),
    (J, "running", "young"): ("-", "idle", "-"),
    (J, "running", "old"): ("-", "idle", "-"),
    (J, "terminated", "young"): ("lost+node", "lost+node", "lost+node"),
    (J, "terminated", "old"): ("lost+node", "lost+node", "lost+node"),
    (J, "failed", "young"): ("lost+node", "lost+node", "lost+node"),
    (J, "failed", "old"): ("lost+node", "lost+node", "lost+node"),
    (J, "interrupted", "young"): ("notice", "notice", "notice"),
    (J, "interrupted", "old"): ("notice", "notice", "notice"),
    # DRAINING: as JOINED
    (D, "absent", "young"): ("lost+node", "lost+node", "lost+node"),
    (D, "absent", "old"): ("lost+node", "lost+node", "lost+node"),
    (D, "pending", "young"): ("-", "idle", "-"),
    (D, "pending", "old"): ("-", "idle", "-"),
    (D, "running", "young"): ("-", "idle", "-"),
    (D, "running", "old"): ("-", "idle", "-"),
    (D, "terminated", "young"): ("lost+node", "lost+node", "lost+node"),
    (D, "terminated", "old"): ("lost+node", "lost+node", "lost+node"),
    (D, "failed", "young"): ("lost+node", "lost+node", "lost+node"),
    (D, "failed", "old"): ("lost+node", "lost+node", "lost+node"),
    (D, "interrupted", "young"): ("notice", "notice", "notice"),
    (D, "interrupted", "old"): ("notice", "notice", "notice"),
    # TERMINATING: gone -> terminated; still listed (even with a notice) -> call terminate again
    (T, "absent", "young"): ("gone", "gone", "gone"),
    (T, "absent", "old"): ("gone", "gone", "gone"),
    (T, "pending", "young"): ("retry", "retry", "retry"),
    (T, "pending", "old"): ("retry", "retry", "retry"),
    (T, "running", "young"): ("retry", "retry", "retry"),
    (T, "running", "old"): ("retry", "retry", "retry"),
    (T, "terminated", "young"): ("gone", "gone", "gone"),
    (T, "terminated", "old"): ("gone", "gone", "gone"),
    (T, "failed", "young"): ("gone", "gone", "gone"),
    (T, "failed", "old"): ("gone", "gone", "gone"),
    (T, "interrupted", "young"): ("retry", "retry", "retry"),
    (T, "interrupted", "old"): ("retry", "retry", "retry"),
}


def instance(state: InstanceState, age: float, **kw: object) -> Instance:
    base = Instance(
        id="i-1", cloud="aws", region="us-east-1", zone="use1-az1", instance_type="p4d.24xlarge",
        market=Market.ON_DEMAND, purpose=Purpose.OVERFLOW, gpus=8, gpu_model="A100", price_per_hour=32.0,
        state=state, created_at=NOW - age, launched_at=None if state is P else NOW - age,
        node_name=NODE if state in (J, D, T) else "", for_jobs=("job-1",), address="10.0.0.9",
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def cloud_instance(kind: str, **kw: object) -> CloudInstance | None:
    if kind == "absent":
        return None
    state = CloudState.RUNNING if kind == "interrupted" else CloudState(kind)
    ci = CloudInstance(
        cloud="aws", cloud_id="i-0abc", burst_id="i-1", region="us-east-1", zone="use1-az1",
        instance_type="p4d.24xlarge", state=state, launched_at=CLOUD_LAUNCHED_AT, address="10.1.2.3",
        interrupted=kind == "interrupted",
    )
    return dataclasses.replace(ci, **kw)  # type: ignore[arg-type]


def node(kind: str) -> Node | None:
    if kind == "none":
        return None
    used = 0 if kind == "idle" else 8
    return Node(NODE, 8, gpus_used=used, running_jobs=0 if kind == "idle" else 1, instance_id="i-1")


def expected(code: str, inst: Instance, ci: CloudInstance | None, n: Node | None) -> Decision:
    """The decision a table cell names, in full."""
    lost_reason = "spot reclaim" if ci is not None and ci.interrupted else "the cloud no longer has it"
    closed = transition(InstanceState.TERMINATED, BOOKS_CLOSED)
    if code == "-":
        return NOTHING
    if code == "adopt":
        assert ci is not None
        return Decision((transition(
            L, f"adopted {ci.cloud_id} listed under its burst:id tag", actor="recovery",
            cloud_id=ci.cloud_id, launched_at=ci.launched_at, address=ci.address,
        ),), recovered=True)
    if code in ("recover", "abandon"):
        return Decision((RecoverPlanned(abandon=code == "abandon"),), due=NOW + 30.0, recovered=True)
    if code == "wait":
        return Decision(due=inst.created_at + 180.0)
    if code == "lost":
        return Decision((transition(InstanceState.LOST, lost_reason, terminated_at=NOW), closed))
    if code == "lost+node":
        return Decision((transition(InstanceState.LOST, lost_reason, terminated_at=NOW), RemoveNode(NODE), closed))
    if code == "notice":
        return Decision((transition(InstanceState.LOST, "spot interruption notice", terminated_at=NOW), closed))
    if code == "running":
        return Decision((transition(R, "the cloud reports it running", address="10.1.2.3"),))
    if code in ("joined-idle", "joined-busy"):
        assert n is not None and inst.launched_at is not None
        return Decision((
            BootSample(NOW - inst.launched_at),
            transition(J, f"node {NODE} registered with the scheduler", node_name=NODE, joined_at=NOW,
                       idle_since=NOW if code == "joined-idle" else None),
        ))
    if code == "idle":
        return Decision((SetIdleSince(NOW),))
    if code == "gone":
        return Decision((transition(InstanceState.TERMINATED, "the cloud confirms it is gone"),))
    if code == "retry":
        return Decision((RetryTerminate(),), due=NOW + 30.0)
    raise AssertionError(f"unknown code {code}")


def test_the_table_covers_every_combination() -> None:
    assert set(TABLE) == set(itertools.product(STATES, CLOUDS, AGES))


@pytest.mark.parametrize(
    ("state", "cloud", "age", "node_kind"),
    list(itertools.product(STATES, CLOUDS, AGES, NODES)),
    ids=lambda v: str(v),
)
def test_decision_table(state: InstanceState, cloud: str, age: str, node_kind: str) -> None:
    code = TABLE[(state, cloud, age)][NODES.index(node_kind)]
    inst, ci, n = instance(state, AGES[age]), cloud_instance(cloud), node(node_kind)
    assert reconcile_instance(inst, ci, n, NOW, SETTINGS) == expected(code, inst, ci, n), code


# ---- beyond the table --------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_nothing_happens_when_the_cloud_could_not_be_listed(state: InstanceState, cloud: str) -> None:
    d = reconcile_instance(instance(state, 1200.0), cloud_instance(cloud), node("idle"), NOW, SETTINGS, observed=False)
    assert d is NOTHING


@pytest.mark.parametrize("state", [InstanceState.TERMINATED, InstanceState.LOST, InstanceState.LAUNCH_FAILED])
def test_an_instance_that_is_not_live_needs_nothing(state: InstanceState) -> None:
    assert reconcile_instance(instance(state, 1200.0), cloud_instance("running"), node("busy"), NOW, SETTINGS) is NOTHING


def test_a_spot_reclaim_is_named_as_such() -> None:
    inst = instance(J, 60.0)
    ci = cloud_instance("terminated", interrupted=True)
    assert reconcile_instance(inst, ci, None, NOW, SETTINGS) == Decision((
        transition(InstanceState.LOST, "spot reclaim", terminated_at=NOW), RemoveNode(NODE),
        transition(InstanceState.TERMINATED, BOOKS_CLOSED),
    ))


# (case, for_jobs, jobs pending, age) -> abandon?
PLANNED_CASES = [
    ("young, its job still pending", ("job-1",), True, 60.0, False),
    ("young, none of its jobs pending", ("job-1",), False, 60.0, True),
    ("young, planned for no job", (), False, 60.0, False),
    ("just before the timeout", ("job-1",), True, 599.0, False),
    ("at the timeout", ("job-1",), True, 600.0, True),
    ("old, planned for no job", (), True, 1200.0, True),
]


@pytest.mark.parametrize(("case", "for_jobs", "pending", "age", "abandon"), PLANNED_CASES, ids=[c[0] for c in PLANNED_CASES])
def test_a_planned_intent_is_abandoned_when_stale_or_unneeded(
    case: str, for_jobs: tuple[str, ...], pending: bool, age: float, abandon: bool
) -> None:
    d = reconcile_instance(instance(P, age, for_jobs=for_jobs), None, None, NOW, SETTINGS, jobs_pending=pending)
    assert d.steps == (RecoverPlanned(abandon=abandon),) and d.recovered and d.due == NOW + 30.0


def test_adoption_without_a_launch_time_uses_now() -> None:
    d = reconcile_instance(instance(P, 60.0), cloud_instance("pending", launched_at=None), None, NOW, SETTINGS)
    (t,) = d.steps
    assert t == transition(L, "adopted i-0abc listed under its burst:id tag", actor="recovery",
                           cloud_id="i-0abc", launched_at=NOW, address="10.1.2.3")


# LAUNCHING and not listed: (launched_at, created_at) -> due (None: lost)
@pytest.mark.parametrize(("launched_ago", "created_ago", "due"), [
    (179.0, 1000.0, NOW + 1.0),  # the launch time counts, not the intent's
    (180.0, 1000.0, None),  # the grace ends exactly at 180 s
    (None, 100.0, NOW + 80.0),  # no launch time: from the intent
    (None, 200.0, None),
])
def test_the_listing_grace_of_a_fresh_launch(launched_ago: float | None, created_ago: float, due: float | None) -> None:
    inst = instance(L, created_ago, launched_at=None if launched_ago is None else NOW - launched_ago)
    d = reconcile_instance(inst, None, None, NOW, SETTINGS)
    if due is None:
        assert d.steps[0] == transition(InstanceState.LOST, "the cloud no longer has it", terminated_at=NOW)
        assert d.due is None
    else:
        assert d == Decision(due=due)


def test_running_keeps_the_known_address_when_the_cloud_reports_none() -> None:
    d = reconcile_instance(instance(L, 60.0), cloud_instance("running", address=""), None, NOW, SETTINGS)
    assert d.steps == (transition(R, "the cloud reports it running", address="10.0.0.9"),)


def test_a_join_without_a_launch_time_gives_no_boot_sample() -> None:
    d = reconcile_instance(instance(L, 60.0, launched_at=None), cloud_instance("running"), node("busy"), NOW, SETTINGS)
    assert d.steps == (transition(J, f"node {NODE} registered with the scheduler", node_name=NODE, joined_at=NOW, idle_since=None),)


# JOINED/DRAINING with a node: (node, idle_since) -> step or None
@pytest.mark.parametrize("state", [J, D])
@pytest.mark.parametrize(("node_kind", "idle_since", "step"), [
    ("idle", None, SetIdleSince(NOW)),
    ("idle", NOW - 300.0, None),  # its idle clock keeps running
    ("busy", NOW - 300.0, SetIdleSince(None)),
    ("busy", None, None),
])
def test_idle_tracking(state: InstanceState, node_kind: str, idle_since: float | None, step: SetIdleSince | None) -> None:
    d = reconcile_instance(instance(state, 1200.0, idle_since=idle_since), cloud_instance("running"), node(node_kind), NOW, SETTINGS)
    assert d == (NOTHING if step is None else Decision((step,)))


def test_transition_fields_do_not_depend_on_their_order() -> None:
    assert transition(R, "x", b=1, a=2) == transition(R, "x", a=2, b=1)
    assert transition(R, "x", a=2, b=1).values() == {"a": 2, "b": 1}
