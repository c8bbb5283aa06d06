"""One contract for every :class:`burst.ports.Store`: MemoryStore, SqlStore on SQLite, and
SqlStore on a real PostgreSQL (started by tests/support/postgres.py; skipped if not installed).

MemoryStore's behaviour is the specification; every test here runs unchanged on all three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from burst.domain import (
    ChallengeEnding,
    ChallengeJobKind,
    ChallengeState,
    GrandChallenge,
    Instance,
    InstanceState,
    InvalidTransition,
    Market,
    OnDemandRequest,
    PreemptedJob,
    Purpose,
    RequestState,
)
from burst.errors import BudgetExceeded, DuplicateRecord, LeaseLost, RecordNotFound
from burst.ports import AuditRow, Backoff, BudgetCheck, Lease, MirrorRecord, SpendEntry, Store
from burst.store.memory import MemoryStore
from burst.store.sql import SqlStore
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401  (pytest fixtures)

I = InstanceState  # noqa: E741
R = RequestState
C = ChallengeState


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "sqlite":
        s = SqlStore.from_url(f"sqlite:///{tmp_path}/db/burst.db")
    else:
        s = SqlStore.from_url(request.getfixturevalue("postgres_url"))
    try:
        yield s
    finally:
        s.close()


# ---- helpers ---------------------------------------------------------------------------------


def inst(id: str = "b-1", **kw: Any) -> Instance:
    base: dict[str, Any] = dict(
        id=id,
        cloud="aws",
        region="us-east-1",
        zone="use1-az1",
        instance_type="p4d.24xlarge",
        market=Market.SPOT,
        purpose=Purpose.OVERFLOW,
        gpus=8,
        gpu_model="a100",
        price_per_hour=36.0,  # $0.01 per second
        owner="alice",
        team="vision",
        for_jobs=("j1", "j2"),
    )
    base.update(kw)
    return Instance(**base)


def audit_count(store: Store) -> int:
    return len(store.audit_rows(limit=1_000_000))


def actions(store: Store, subject: str) -> list[str]:
    return [r.action for r in reversed(store.audit_rows(subject=subject, limit=1000))]


def walk(store: Store, instance_id: str, path: list[InstanceState], *, start: float = 1000.0) -> Instance:
    """Drive an existing instance along ``path``, one second per step; set launched_at on LAUNCHING."""
    cur = store.get_instance(instance_id)
    assert cur is not None
    t = start
    for to in path:
        fields: dict[str, Any] = {}
        if to is I.LAUNCHING:
            fields = {"cloud_id": f"i-{instance_id}", "launched_at": t}
        cur = store.transition_instance(instance_id, to, now=t, actor="ctl", reason=f"to {to}", **fields)
        t += 1
    return cur


# ---- instances -------------------------------------------------------------------------------


def test_create_intent_writes_planned_row_and_one_audit_row(store: Store) -> None:
    got = store.create_intent(inst(state=I.RUNNING), now=100.0, actor="ctl", reason="overflow j1")
    assert got.state is I.PLANNED
    assert got.created_at == 100.0
    assert got == store.get_instance("b-1")
    assert got.for_jobs == ("j1", "j2") and got.market == Market.SPOT and got.purpose == Purpose.OVERFLOW
    assert [i.id for i in store.live_instances()] == ["b-1"]
    rows = store.audit_rows(subject="b-1")
    assert rows == [AuditRow(100.0, "ctl", "instance", "b-1", "->planned", "overflow j1", {})]

    kept = store.create_intent(inst("b-2", created_at=50.0), now=100.0, actor="ctl", reason="r")
    assert kept.created_at == 50.0


def test_create_intent_is_idempotent(store: Store) -> None:
    first = store.create_intent(inst(), now=100.0, actor="ctl", reason="r")
    n = audit_count(store)
    refusing = BudgetCheck(scope="global", cap_usd=0.0, period_start=0.0, asked_usd=1e9)
    for again in (
        store.create_intent(inst(region="eu-west-1", gpus=1), now=200.0, actor="other", reason="again"),
        store.create_intent(inst(), now=300.0, actor="ctl", reason="again", budget=refusing),
    ):
        assert again == first
    assert store.get_instance("b-1") == first
    assert audit_count(store) == n
    assert len(store.instances()) == 1


LIFECYCLES: dict[str, list[InstanceState]] = {
    "happy": [I.LAUNCHING, I.RUNNING, I.JOINED, I.DRAINING, I.TERMINATING, I.TERMINATED],
    "drain-cancelled": [
        I.LAUNCHING,
        I.RUNNING,
        I.JOINED,
        I.DRAINING,
        I.JOINED,
        I.DRAINING,
        I.TERMINATING,
        I.TERMINATED,
    ],
    "joined-before-running": [I.LAUNCHING, I.JOINED, I.TERMINATING, I.TERMINATED],
    "spot-reclaim": [I.LAUNCHING, I.RUNNING, I.JOINED, I.LOST, I.TERMINATED],
    "launch-failed": [I.LAUNCH_FAILED, I.TERMINATED],
    "abandoned": [I.TERMINATED],
    "recovered": [I.RUNNING, I.TERMINATING, I.LOST, I.TERMINATED],
}


@pytest.mark.parametrize("path", LIFECYCLES.values(), ids=LIFECYCLES.keys())
def test_instance_lifecycle_walk_is_audited(store: Store, path: list[InstanceState]) -> None:
    store.create_intent(inst(), now=999.0, actor="ctl", reason="plan")
    prev = I.PLANNED
    for step, to in enumerate(path):
        now = 1000.0 + step
        fields: dict[str, Any] = {"cloud_id": "i-123", "launched_at": now} if to is I.LAUNCHING else {}
        got = store.transition_instance("b-1", to, now=now, actor="ctl", reason=f"step {step}", **fields)
        assert got.state is to
        assert store.get_instance("b-1") == got
        assert (got.id in {i.id for i in store.live_instances()}) == (to is not I.TERMINATED)
        row = store.audit_rows(subject="b-1", limit=1)[0]
        assert (row.at, row.actor, row.kind, row.action, row.reason) == (
            now,
            "ctl",
            "instance",
            f"{prev}->{to}",
            f"step {step}",
        )
        prev = to
    assert actions(store, "b-1") == ["->planned"] + [
        f"{a}->{b}" for a, b in zip([I.PLANNED, *path[:-1]], path, strict=True)
    ]
    final = store.get_instance("b-1")
    assert final is not None and final.terminated_at == 1000.0 + len(path) - 1
    assert len(store.spend_entries(since=0.0)) == 1


def test_transition_sets_fields_and_update_instance_is_not_audited(store: Store) -> None:
    store.create_intent(inst(), now=1.0, actor="ctl", reason="r")
    got = store.transition_instance(
        "b-1",
        I.LAUNCHING,
        now=2.0,
        actor="ctl",
        reason="r",
        cloud_id="i-9",
        launched_at=2.0,
        for_jobs=("j9",),
    )
    assert (got.cloud_id, got.launched_at, got.for_jobs) == ("i-9", 2.0, ("j9",))
    n = audit_count(store)
    upd = store.update_instance(
        "b-1", idle_since=5.0, node_name="burst01", address="10.0.0.7", last_error="x"
    )
    assert (upd.idle_since, upd.node_name, upd.address, upd.last_error, upd.state) == (
        5.0,
        "burst01",
        "10.0.0.7",
        "x",
        I.LAUNCHING,
    )
    assert store.get_instance("b-1") == upd
    assert [i for i in store.live_instances() if i.id == "b-1"] == [upd]
    assert audit_count(store) == n
    with pytest.raises(ValueError):
        store.update_instance("b-1", state=I.RUNNING)
    with pytest.raises(RecordNotFound):
        store.update_instance("nope", idle_since=1.0)
    assert store.get_instance("b-1") == upd


INVALID: list[tuple[list[InstanceState], InstanceState]] = [
    ([], I.JOINED),
    ([], I.DRAINING),
    ([], I.LOST),
    ([I.LAUNCHING], I.PLANNED),
    ([I.LAUNCHING, I.RUNNING], I.LAUNCHING),
    ([I.LAUNCHING, I.RUNNING, I.JOINED], I.TERMINATED),
    ([I.TERMINATED], I.RUNNING),
    ([I.TERMINATED], I.TERMINATED),
    ([I.LAUNCH_FAILED], I.RUNNING),
]


@pytest.mark.parametrize(
    ("path", "bad"), INVALID, ids=[f"{'-'.join(p) or 'planned'}-to-{b}" for p, b in INVALID]
)
def test_invalid_transition_raises_and_writes_nothing(
    store: Store, path: list[InstanceState], bad: InstanceState
) -> None:
    store.create_intent(inst(), now=1.0, actor="ctl", reason="r")
    before = walk(store, "b-1", path)
    n, ledger = audit_count(store), store.spend_entries(since=0.0)
    with pytest.raises(InvalidTransition):
        store.transition_instance("b-1", bad, now=5000.0, actor="ctl", reason="bad", cloud_id="changed")
    assert store.get_instance("b-1") == before
    assert audit_count(store) == n
    assert store.spend_entries(since=0.0) == ledger


def test_transitions_of_unknown_records_raise_not_found(store: Store) -> None:
    n = audit_count(store)
    with pytest.raises(RecordNotFound):
        store.transition_instance("nope", I.LAUNCHING, now=1.0, actor="a", reason="r")
    with pytest.raises(RecordNotFound):
        store.transition_request("nope", R.APPROVED, now=1.0, actor="a", reason="r")
    with pytest.raises(RecordNotFound):
        store.transition_challenge("nope", C.NOTIFIED, now=1.0, actor="a", reason="r")
    assert audit_count(store) == n
    assert store.get_instance("nope") is None and store.get_request("nope") is None
    assert store.get_challenge("nope") is None


def test_instances_newest_first_and_live_set(store: Store) -> None:
    for k, t in enumerate([10.0, 30.0, 20.0]):
        store.create_intent(inst(f"b-{k}", created_at=t), now=t, actor="ctl", reason="r")
    assert [i.id for i in store.instances()] == ["b-1", "b-2", "b-0"]
    assert [i.id for i in store.instances(since=20.0)] == ["b-1", "b-2"]
    assert [i.id for i in store.instances(limit=1)] == ["b-1"]
    walk(store, "b-0", [I.TERMINATED])
    walk(store, "b-1", [I.LAUNCH_FAILED])
    walk(store, "b-2", [I.LAUNCHING, I.LOST])
    assert sorted(i.id for i in store.live_instances()) == ["b-1", "b-2"]  # every non-terminated state
    assert len(store.instances()) == 3


# ---- spend -----------------------------------------------------------------------------------


def test_ledger_on_terminated_exactly_once_with_billing_minimum(store: Store) -> None:
    # b-1: launched at 1000, terminated 30 s later: billed the 60 s minimum at $0.01/s.
    store.create_intent(inst("b-1"), now=999.0, actor="ctl", reason="r")
    walk(store, "b-1", [I.LAUNCHING, I.RUNNING], start=1000.0)
    store.transition_instance("b-1", I.TERMINATING, now=1029.0, actor="ctl", reason="r")
    store.transition_instance("b-1", I.TERMINATED, now=1030.0, actor="ctl", reason="gone")
    # b-2: never launched: a zero entry, start == end.
    store.create_intent(inst("b-2", team="nlp", owner="bob"), now=1100.0, actor="ctl", reason="r")
    store.transition_instance("b-2", I.TERMINATED, now=1101.0, actor="ctl", reason="abandoned")
    # b-3: terminated_at given explicitly (e.g. the cloud's own time) wins over ``now``.
    store.create_intent(inst("b-3"), now=1200.0, actor="ctl", reason="r")
    walk(store, "b-3", [I.LAUNCHING, I.RUNNING, I.LOST], start=1200.0)
    store.transition_instance("b-3", I.TERMINATED, now=1900.0, actor="ctl", reason="r", terminated_at=1500.0)

    entries = store.spend_entries(since=0.0)
    assert [e.instance_id for e in entries] == ["b-1", "b-2", "b-3"]
    e1, e2, e3 = entries
    assert dataclasses.replace(e1, usd=round(e1.usd, 9)) == SpendEntry(
        "b-1", "aws", "us-east-1", "overflow", "vision", "alice", 1000.0, 1030.0, 0.6
    )
    assert e2 == SpendEntry("b-2", "aws", "us-east-1", "overflow", "nlp", "bob", 1101.0, 1101.0, 0.0)
    assert (e3.start, e3.end, e3.usd) == (1200.0, 1500.0, pytest.approx(3.0))

    with pytest.raises(InvalidTransition):
        store.transition_instance("b-1", I.TERMINATED, now=2000.0, actor="ctl", reason="again")
    assert len(store.spend_entries(since=0.0)) == 3

    # [since, until) on the end time.
    assert [e.instance_id for e in store.spend_entries(since=1030.0, until=1101.0)] == ["b-1"]
    assert [e.instance_id for e in store.spend_entries(since=1030.1)] == ["b-2", "b-3"]
    assert store.spend_entries(since=1501.0) == []


def test_spend_is_ledger_plus_live_accrual(store: Store) -> None:
    store.create_intent(inst("done"), now=0.0, actor="ctl", reason="r")
    walk(store, "done", [I.LAUNCHING, I.RUNNING, I.TERMINATING, I.TERMINATED], start=100.0)  # 60 s min: $0.6
    store.create_intent(inst("live", team="nlp"), now=0.0, actor="ctl", reason="r")
    walk(store, "live", [I.LAUNCHING], start=1000.0)
    store.create_intent(inst("planned"), now=0.0, actor="ctl", reason="r")  # not launched: costs nothing
    cases = [
        # since, now, team, expected
        (0.0, 1010.0, None, 0.6 + 0.6),  # live one within its 60 s minimum
        (0.0, 1100.0, None, 0.6 + 1.0),
        (0.0, 1100.0, "nlp", 1.0),
        (0.0, 1100.0, "vision", 0.6),
        (0.0, 1100.0, "other", 0.0),
        (104.0, 1100.0, None, 1.0),  # ledger entry ended at 103, before ``since``
        (103.0, 1100.0, None, 1.6),
    ]
    for since, now, team, expected in cases:
        assert store.spend(since=since, now=now, team=team) == pytest.approx(expected), (since, now, team)


# ---- budget ----------------------------------------------------------------------------------


def _budget_setup(store: Store) -> None:
    """Ledger: $0.6 (vision). Live: one vision instance accruing $1.0 by t=1100, one planned nlp."""
    store.create_intent(inst("done"), now=0.0, actor="ctl", reason="r")
    walk(store, "done", [I.LAUNCHING, I.RUNNING, I.TERMINATING, I.TERMINATED], start=100.0)
    store.create_intent(inst("live"), now=0.0, actor="ctl", reason="r")
    walk(store, "live", [I.LAUNCHING], start=1000.0)
    store.create_intent(inst("idle", team="nlp"), now=0.0, actor="ctl", reason="r")


BUDGETS: list[tuple[str, BudgetCheck, bool]] = [
    ("global-fits", BudgetCheck("global", cap_usd=10.0, period_start=0.0, asked_usd=8.0), True),
    ("global-over", BudgetCheck("global", cap_usd=10.0, period_start=0.0, asked_usd=8.5), False),
    ("global-exactly-at-cap", BudgetCheck("global", cap_usd=2.0, period_start=0.0, asked_usd=0.4), True),
    ("ledger-before-period", BudgetCheck("global", cap_usd=2.0, period_start=500.0, asked_usd=0.9), True),
    ("ledger-in-period", BudgetCheck("global", cap_usd=2.0, period_start=0.0, asked_usd=0.9), False),
    # reserve counts every live instance (2 here: "live" and the planned "idle").
    ("reserve-fits", BudgetCheck("global", 10.0, 0.0, asked_usd=6.0, reserve_per_live_usd=1.0), True),
    ("reserve-over", BudgetCheck("global", 10.0, 0.0, asked_usd=6.6, reserve_per_live_usd=1.0), False),
    ("team-other", BudgetCheck("team:nlp", 1.0, 0.0, asked_usd=0.9, team="nlp"), True),
    (
        "team-reserve",
        BudgetCheck("team:nlp", 1.0, 0.0, asked_usd=0.9, team="nlp", reserve_per_live_usd=0.2),
        False,
    ),
    ("team-own", BudgetCheck("team:vision", 2.0, 0.0, asked_usd=0.5, team="vision"), False),
]


@pytest.mark.parametrize(("budget", "allowed"), [b[1:] for b in BUDGETS], ids=[b[0] for b in BUDGETS])
def test_budget_check(store: Store, budget: BudgetCheck, allowed: bool) -> None:
    _budget_setup(store)
    n, live = audit_count(store), store.live_instances()
    new = inst("new", team=budget.team or "vision")
    if allowed:
        got = store.create_intent(new, now=1100.0, actor="ctl", reason="r", budget=budget)
        assert got.state is I.PLANNED and store.get_instance("new") == got
        assert audit_count(store) == n + 1
    else:
        with pytest.raises(BudgetExceeded) as ei:
            store.create_intent(new, now=1100.0, actor="ctl", reason="r", budget=budget)
        assert ei.value.scope == budget.scope and ei.value.asked == budget.asked_usd
        assert ei.value.committed + budget.asked_usd > budget.cap_usd
        assert store.get_instance("new") is None
        assert audit_count(store) == n
        assert store.live_instances() == live


def test_budget_committed_amount(store: Store) -> None:
    _budget_setup(store)
    b = BudgetCheck("global", cap_usd=1.0, period_start=0.0, asked_usd=1.0, reserve_per_live_usd=0.5)
    with pytest.raises(BudgetExceeded) as ei:
        store.create_intent(inst("new"), now=1100.0, actor="ctl", reason="r", budget=b)
    assert ei.value.committed == pytest.approx(0.6 + 1.0 + 2 * 0.5)
    assert ei.value.cap == 1.0


# ---- offer backoff ---------------------------------------------------------------------------


def test_backoff_doubles_caps_resets_and_expires(store: Store) -> None:
    key = "aws/us-east-1/use1-az1/p4d.24xlarge/spot"
    steps = [
        # now, expected failures, expected cool-down
        (1000.0, 1, 60.0),
        (1100.0, 2, 120.0),
        (1300.0, 3, 240.0),
        (1600.0, 4, 240.0),  # capped
        (1900.0, 5, 240.0),
    ]
    for now, failures, cool in steps:
        b = store.record_offer_failure(key, now=now, base_s=60.0, cap_s=240.0, error=f"ICE {failures}")
        assert b == Backoff(key, failures, now + cool, f"ICE {failures}")
        assert store.backoffs(now) == {key: b}
        assert store.backoffs(now + cool - 0.5) == {key: b}
        assert store.backoffs(now + cool) == {}  # ``until`` is the first moment it may be tried
    store.record_offer_failure("other", now=1900.0, base_s=60.0, cap_s=240.0, error="quota")
    assert set(store.backoffs(1900.0)) == {key, "other"}

    store.record_offer_success(key)
    assert set(store.backoffs(1900.0)) == {"other"}
    store.record_offer_success(key)  # no-op
    store.record_offer_success("never-failed")  # no-op
    b = store.record_offer_failure(key, now=3000.0, base_s=60.0, cap_s=240.0, error="ICE")
    assert (b.failures, b.until) == (1, 3060.0)


# ---- on-demand requests ----------------------------------------------------------------------


def req(id: str = "r-1", **kw: Any) -> OnDemandRequest:
    base: dict[str, Any] = dict(
        id=id, user="U1", team="vision", gpus=8, gpu_model="a100", hours=4.0, created_at=10.0
    )
    base.update(kw)
    return OnDemandRequest(**base)


def test_request_lifecycle(store: Store) -> None:
    got = store.add_request(req(note="for the paper", spot=True), now=10.0, actor="U1")
    assert got == req(note="for the paper", spot=True) == store.get_request("r-1")
    assert store.audit_rows(subject="r-1") == [
        AuditRow(10.0, "U1", "request", "r-1", "->requested", "created", {})
    ]
    n = audit_count(store)
    with pytest.raises(DuplicateRecord):
        store.add_request(req(user="U2"), now=11.0, actor="U2")
    assert audit_count(store) == n and store.get_request("r-1") == got

    path: list[tuple[RequestState, dict[str, Any]]] = [
        (R.APPROVED, {"approver": "ADMIN"}),
        (R.PROVISIONING, {"instance_id": "b-1"}),
        (R.READY, {"expires_at": 14_410.0}),
        (R.EXPIRING, {}),
        (R.READY, {"expires_at": 18_010.0}),
        (R.RELEASED, {}),
    ]
    prev = R.REQUESTED
    for k, (to, fields) in enumerate(path):
        got = store.transition_request("r-1", to, now=20.0 + k, actor="ADMIN", reason=f"s{k}", **fields)
        assert got.state is to and store.get_request("r-1") == got
        assert store.audit_rows(subject="r-1", limit=1)[0] == AuditRow(
            20.0 + k, "ADMIN", "request", "r-1", f"{prev}->{to}", f"s{k}", {}
        )
        prev = to
    assert (got.approver, got.instance_id, got.expires_at) == ("ADMIN", "b-1", 18_010.0)

    n = audit_count(store)
    with pytest.raises(InvalidTransition):
        store.transition_request("r-1", R.READY, now=99.0, actor="U1", reason="bad")
    assert audit_count(store) == n and store.get_request("r-1") == got


def test_requests_filters_and_order(store: Store) -> None:
    store.add_request(req("r-b", user="U2", created_at=30.0), now=30.0, actor="U2")
    store.add_request(req("r-a", user="U1", created_at=10.0), now=10.0, actor="U1")
    store.add_request(req("r-c", user="U1", created_at=20.0), now=20.0, actor="U1")
    store.transition_request("r-c", R.AUTO_APPROVED, now=21.0, actor="bot", reason="quota ok")
    assert [r.id for r in store.requests()] == ["r-a", "r-c", "r-b"]
    assert [r.id for r in store.requests(user="U1")] == ["r-a", "r-c"]
    assert [r.id for r in store.requests(states=[R.REQUESTED])] == ["r-a", "r-b"]
    assert [r.id for r in store.requests(user="U1", states=[R.AUTO_APPROVED, R.READY])] == ["r-c"]
    assert store.requests(states=[]) == []
    assert store.requests(user="nobody") == []


# ---- grand challenges ------------------------------------------------------------------------


def gc(id: str = "gc-1", **kw: Any) -> GrandChallenge:
    base: dict[str, Any] = dict(
        id=id,
        name="llm-pretrain",
        start_at=10_000.0,
        duration_s=7200.0,
        command="sbatch gc.sh",
        created_by="ADMIN",
    )
    base.update(kw)
    return GrandChallenge(**base)


def pj(job_id: str, order: int, **kw: Any) -> PreemptedJob:
    base: dict[str, Any] = dict(job_id=job_id, user=f"U{order}", gpus=8, priority=100 - order, order=order)
    base.update(kw)
    return PreemptedJob(**base)


def test_challenge_lifecycle_keeps_preempted_jobs_in_order(store: Store) -> None:
    got = store.add_challenge(gc(), now=1.0, actor="ADMIN")
    assert got == dataclasses.replace(gc(), phases=(("scheduled", 1.0),)) == store.get_challenge("gc-1")
    assert actions(store, "gc-1") == ["->scheduled"]
    with pytest.raises(DuplicateRecord):
        store.add_challenge(gc(name="dup"), now=2.0, actor="ADMIN")
    jobs = (pj("j30", 0), pj("j4", 1, may_burst=True), pj("j17", 2), pj("j1", 3))
    path: list[tuple[ChallengeState, dict[str, Any]]] = [
        (C.NOTIFIED, {"notices": ("T-86400",)}),
        (C.DRAINING, {"reservation": "burst-gc-1", "node_names": ("n2", "n1"), "note": "reserved"}),
        (C.PREEMPTING, {"preempted_jobs": jobs}),
        (C.RUNNING, {"challenge_job_id": "77"}),
        (C.RESTORING, {}),
        (C.DONE, {}),
    ]
    for k, (to, fields) in enumerate(path):
        got = store.transition_challenge("gc-1", to, now=100.0 + k, actor="runner", reason=f"s{k}", **fields)
        assert got.state is to and store.get_challenge("gc-1") == got
    assert got.preempted_jobs == jobs and got.note == "reserved"
    assert (got.notices, got.reservation, got.node_names, got.challenge_job_id) == (
        ("T-86400",), "burst-gc-1", ("n2", "n1"), "77",
    )
    assert got.phases == (
        ("scheduled", 1.0), ("notified", 100.0), ("draining", 101.0), ("preempting", 102.0),
        ("running", 103.0), ("restoring", 104.0), ("done", 105.0),
    )
    assert got.entered_at(C.PREEMPTING) == 102.0 and got.entered_at(C.FAILED) is None
    assert actions(store, "gc-1") == [
        "->scheduled",
        "scheduled->notified",
        "notified->draining",
        "draining->preempting",
        "preempting->running",
        "running->restoring",
        "restoring->done",
    ]
    n = audit_count(store)
    with pytest.raises(InvalidTransition):
        store.transition_challenge("gc-1", C.CANCELLED, now=200.0, actor="ADMIN", reason="too late")
    assert audit_count(store) == n and store.get_challenge("gc-1") == got


def test_challenge_new_fields_round_trip(store: Store) -> None:
    full = gc(
        nodes=4, job_kind=ChallengeJobKind.KUBERNETES, job_path="/srv/gc/job.yaml", job_text="kind: Job\n",
        owner="U9", burst_preempted=True, ending=ChallengeEnding.CANCELLED, last_error="x",
        phases=(("scheduled", 5.0),),
    )
    got = store.add_challenge(full, now=9.0, actor="ADMIN")
    assert got == full == store.get_challenge("gc-1")  # given phases are kept
    assert isinstance(got.job_kind, ChallengeJobKind) and isinstance(got.ending, ChallengeEnding)


def test_update_challenge_changes_fields_but_never_state_or_the_preempted_set(store: Store) -> None:
    store.add_challenge(gc(), now=1.0, actor="ADMIN")
    n = audit_count(store)
    got = store.update_challenge("gc-1", reserved=True, notices=("T-3600",), ending=ChallengeEnding.FAILED)
    assert (got.reserved, got.notices, got.ending) == (True, ("T-3600",), ChallengeEnding.FAILED)
    assert store.get_challenge("gc-1") == got and audit_count(store) == n
    for bad in ({"state": C.DONE}, {"phases": ()}):
        with pytest.raises(ValueError):
            store.update_challenge("gc-1", **bad)
    with pytest.raises(RecordNotFound):
        store.update_challenge("missing", reserved=True)
    store.transition_challenge("gc-1", C.NOTIFIED, now=2.0, actor="r", reason="r")
    store.transition_challenge("gc-1", C.DRAINING, now=3.0, actor="r", reason="r")
    jobs = (pj("a", 0), pj("b", 1))
    store.transition_challenge("gc-1", C.PREEMPTING, now=4.0, actor="r", reason="r", preempted_jobs=jobs)
    before = store.get_challenge("gc-1")
    with pytest.raises(ValueError, match="already recorded"):
        store.update_challenge("gc-1", preempted_jobs=(pj("c", 0),))
    with pytest.raises(ValueError, match="already recorded"):
        store.transition_challenge("gc-1", C.RESTORING, now=5.0, actor="r", reason="r", preempted_jobs=())
    assert store.get_challenge("gc-1") == before
    assert store.update_challenge("gc-1", preempted_jobs=jobs).preempted_jobs == jobs  # same set: no-op


def test_mark_preempted_released_and_restored(store: Store) -> None:
    store.add_challenge(gc(preempted_jobs=(pj("a", 0), pj("b", 1), pj("c", 2))), now=1.0, actor="ADMIN")
    n = audit_count(store)
    got = store.mark_preempted_released("gc-1", ["b", "zz"], now=50.0, actor="runner", reason="restore")
    assert [(p.job_id, p.released_at, p.released) for p in got.preempted_jobs] == [
        ("a", None, False), ("b", 50.0, True), ("c", None, False),
    ]
    # A second mark keeps the first time: released_at says when the job was first given back.
    got = store.mark_preempted_released("gc-1", ["a", "b"], now=60.0, actor="runner", reason="restore")
    assert [p.released_at for p in got.preempted_jobs] == [60.0, 50.0, None]
    got = store.mark_preempted_restored("gc-1", ["b"], now=70.0, actor="runner", reason="seen pending")
    assert [p.restored for p in got.preempted_jobs] == [False, True, False]
    assert store.get_challenge("gc-1") == got
    assert audit_count(store) == n + 3
    assert actions(store, "gc-1")[-3:] == ["release", "release", "restored"]
    with pytest.raises(RecordNotFound):
        store.mark_preempted_released("missing", ["a"], now=1.0, actor="r", reason="r")
    with pytest.raises(RecordNotFound):
        store.mark_preempted_restored("missing", ["a"], now=1.0, actor="r", reason="r")


def test_challenges_filter_and_order(store: Store) -> None:
    store.add_challenge(gc("late", start_at=300.0), now=1.0, actor="A")
    store.add_challenge(gc("early", start_at=100.0), now=1.0, actor="A")
    store.add_challenge(gc("mid", start_at=200.0), now=1.0, actor="A")
    store.transition_challenge("mid", C.CANCELLED, now=2.0, actor="A", reason="r")
    assert [c.id for c in store.challenges()] == ["early", "mid", "late"]
    assert [c.id for c in store.challenges(states=[C.SCHEDULED])] == ["early", "late"]
    assert [c.id for c in store.challenges(states=[C.CANCELLED, C.DONE])] == ["mid"]


# ---- audit, mirrors, settings, leases --------------------------------------------------------


def test_audit_rows_filter_limit_and_newest_first(store: Store) -> None:
    data = {"jobs": ["j1", "j2"], "nested": {"usd": 1.5, "ok": True}}
    store.audit(
        at=1.0, actor="ctl", kind="orphan", subject="i-1", action="terminate-orphan", reason="untracked"
    )
    store.audit(
        at=2.0, actor="ctl", kind="decision", subject="tick", action="launch", reason="wait", data=data
    )
    store.audit(at=3.0, actor="U1", kind="admin", subject="i-1", action="denied", reason="not admin")
    assert [r.at for r in store.audit_rows()] == [3.0, 2.0, 1.0]
    assert [r.at for r in store.audit_rows(limit=2)] == [3.0, 2.0]
    assert [r.action for r in store.audit_rows(subject="i-1")] == ["denied", "terminate-orphan"]
    assert [r.action for r in store.audit_rows(subject="i-1", kind="orphan")] == ["terminate-orphan"]
    assert store.audit_rows(kind="decision") == [
        AuditRow(2.0, "ctl", "decision", "tick", "launch", "wait", data)
    ]
    assert store.audit_rows(subject="none") == []


def test_mirrors(store: Store) -> None:
    img, tgt = "harbor.local/ml/train:1.2", "aws/us-east-1"
    assert store.get_mirror(img, tgt) is None
    store.record_mirror(img, tgt, "sha256:aaa", now=10.0)
    store.record_mirror(img, "azure/westeurope", "sha256:aaa", now=11.0)
    assert store.get_mirror(img, tgt) == MirrorRecord(img, tgt, "sha256:aaa", 10.0)
    store.record_mirror(img, tgt, "sha256:bbb", now=20.0)
    assert store.get_mirror(img, tgt) == MirrorRecord(img, tgt, "sha256:bbb", 20.0)
    assert store.get_mirror(img, "azure/westeurope") == MirrorRecord(
        img, "azure/westeurope", "sha256:aaa", 11.0
    )
    assert store.get_mirror("other", tgt) is None


def test_user_settings(store: Store) -> None:
    assert store.get_user_setting("U1", "ssh_key") is None
    store.set_user_setting("U1", "ssh_key", "ssh-ed25519 AAAA one", now=1.0)
    store.set_user_setting("U2", "ssh_key", "ssh-ed25519 AAAA two", now=1.0)
    store.set_user_setting("U1", "ssh_key", "ssh-ed25519 AAAA three", now=2.0)
    assert store.get_user_setting("U1", "ssh_key") == "ssh-ed25519 AAAA three"
    assert store.get_user_setting("U2", "ssh_key") == "ssh-ed25519 AAAA two"
    assert store.get_user_setting("U1", "other") is None


def test_orphan_first_seen_records_once_and_forget_drops_the_rest(store: Store) -> None:
    assert store.orphan_first_seen("i-1", 10.0) == 10.0  # first sighting is recorded
    assert store.orphan_first_seen("i-1", 50.0) == 10.0  # later sightings keep the first time
    assert store.orphan_first_seen("i-2", 20.0) == 20.0
    assert store.orphan_first_seen("i-3", 30.0) == 30.0
    store.forget_orphans({"i-2", "i-unknown"})
    assert store.orphan_first_seen("i-2", 60.0) == 20.0  # kept
    assert store.orphan_first_seen("i-1", 60.0) == 60.0  # forgotten: a new grace period
    assert store.orphan_first_seen("i-3", 61.0) == 61.0
    store.forget_orphans(set())
    assert store.orphan_first_seen("i-2", 70.0) == 70.0


def test_orphan_sightings_and_controller_status_stay_out_of_user_settings(store: Store) -> None:
    store.orphan_first_seen("i-1", 10.0)
    store.set_controller_status({"at": 1.0}, now=1.0)
    for user, key in (("_orphans", "i-1"), ("_controller", "last_tick")):
        assert store.get_user_setting(user, key) is None


def test_controller_status_replaces_and_reads_back_a_copy(store: Store) -> None:
    assert store.controller_status() is None
    summary = {"at": 1.5, "holder": "h:1", "pending": None, "actions": ["Launch"], "notes": [], "n": 3}
    store.set_controller_status(summary, now=1.5)
    got = store.controller_status()
    assert got == summary
    assert got is not None
    got["actions"].append("mutated")  # a caller's changes never reach the store
    assert store.controller_status() == summary
    store.set_controller_status({"at": 2.0, "running_users": ("a", "b")}, now=2.0)
    assert store.controller_status() == {"at": 2.0, "running_users": ["a", "b"]}  # JSON: tuples are lists


LEASE_STEPS: list[tuple[str, str, float, bool | None]] = [
    # op, holder, now, expected (None for release)
    ("acquire", "a", 0.0, True),
    ("acquire", "b", 5.0, False),  # a holds until 10
    ("acquire", "a", 5.0, True),  # renewal: a now holds until 15
    ("acquire", "b", 12.0, False),
    ("acquire", "b", 15.0, True),  # expired exactly at 15: b takes over until 25
    ("acquire", "a", 16.0, False),
    ("release", "a", 17.0, None),  # not the holder: no effect
    ("acquire", "a", 17.0, False),
    ("release", "b", 18.0, None),
    ("acquire", "a", 18.0, True),  # released: free at once
    ("acquire", "a", 100.0, True),  # own expired lease: taken again
]


def test_lease_two_holders_expiry_renewal_release(store: Store) -> None:
    for op, holder, now, expected in LEASE_STEPS:
        if op == "release":
            store.release_lease("leader", holder)
        else:
            assert store.try_acquire_lease("leader", holder, now=now, ttl_s=10.0) is expected, (
                op,
                holder,
                now,
            )
    # Leases are independent by name.
    assert store.try_acquire_lease("other", "b", now=100.0, ttl_s=10.0) is True
    assert store.try_acquire_lease("leader", "b", now=100.0, ttl_s=10.0) is False
    store.release_lease("missing", "a")  # no-op


def test_lease_epoch_grows_each_time_the_lease_changes_hands(store: Store) -> None:
    assert store.lease("leader") is None
    epochs = []
    for op, holder, now, _expected in LEASE_STEPS:
        if op == "release":
            store.release_lease("leader", holder)
        else:
            store.try_acquire_lease("leader", holder, now=now, ttl_s=10.0)
        lease = store.lease("leader")
        assert lease is not None
        epochs.append((lease.holder, lease.epoch))
    assert epochs == [
        ("a", 1),  # first acquisition
        ("a", 1),  # b refused
        ("a", 1),  # renewal keeps the epoch
        ("a", 1),
        ("b", 2),  # takeover after expiry
        ("b", 2),
        ("b", 2),  # a's release: not the holder
        ("b", 2),
        ("", 2),  # released: free, epoch kept
        ("a", 3),  # taken again: a new epoch
        ("a", 3),  # own expired lease renewed by the same store object: nothing changed hands
    ]
    assert store.lease("leader") == Lease("leader", "a", 110.0, 3)


# Every write that leads to a cloud or scheduler action, with arguments valid for the rows that
# _fence_world creates. Each is refused once the store's lease epoch is stale.
FENCED_WRITES: dict[str, Any] = {
    "create_intent": lambda s: s.create_intent(inst("b-new"), now=20.0, actor="ctl", reason="r"),
    "transition_instance": lambda s: s.transition_instance("b-1", I.LAUNCHING, now=20.0, actor="ctl", reason="r"),
    "update_instance": lambda s: s.update_instance("b-1", node_name="n-9"),
    "transition_request": lambda s: s.transition_request("r-1", R.APPROVED, now=20.0, actor="ctl", reason="r"),
    "transition_challenge": lambda s: s.transition_challenge("gc-1", C.NOTIFIED, now=20.0, actor="ctl", reason="r"),
    "update_challenge": lambda s: s.update_challenge("gc-1", note="changed"),
    "mark_preempted_released": lambda s: s.mark_preempted_released("gc-1", ["a"], now=20.0, actor="c", reason="r"),
    "mark_preempted_restored": lambda s: s.mark_preempted_restored("gc-1", ["a"], now=20.0, actor="c", reason="r"),
    "orphan_first_seen": lambda s: s.orphan_first_seen("i-orphan", 20.0),
    "forget_orphans": lambda s: s.forget_orphans([]),
    "check_fence": lambda s: s.check_fence(),
}


def _fence_world(store: Store) -> None:
    store.create_intent(inst("b-1"), now=1.0, actor="ctl", reason="r")
    store.add_request(req("r-1"), now=1.0, actor="U1")
    store.add_challenge(gc(preempted_jobs=(pj("a", 0),)), now=1.0, actor="A")
    store.orphan_first_seen("i-seen", 1.0)


@pytest.mark.parametrize("write", sorted(FENCED_WRITES))
def test_writes_are_not_fenced_before_a_lease_is_taken(store: Store, write: str) -> None:
    """The bot, the CLI and the simulator never take a lease: their writes go through."""
    _fence_world(store)
    FENCED_WRITES[write](store)


@pytest.mark.parametrize("write", sorted(FENCED_WRITES))
def test_fenced_writes_go_through_while_the_lease_is_held(store: Store, write: str) -> None:
    _fence_world(store)
    assert store.try_acquire_lease("leader", "a", now=10.0, ttl_s=10.0)
    FENCED_WRITES[write](store)


def test_fenced_writes_go_through_past_expiry_until_someone_takes_over(store: Store) -> None:
    """The write and a takeover are ordered by the lease row, so while nobody took the lease
    over nobody else can have acted: an expired but untaken lease still lets its holder write."""
    _fence_world(store)
    assert store.try_acquire_lease("leader", "a", now=10.0, ttl_s=1.0)
    assert store.lease("leader") == Lease("leader", "a", 11.0, 1)
    store.check_fence()
    store.update_instance("b-1", node_name="n-1")


@pytest.mark.parametrize("write", sorted(FENCED_WRITES))
def test_fenced_writes_are_refused_after_release_and_write_nothing(store: Store, write: str) -> None:
    _fence_world(store)
    assert store.try_acquire_lease("leader", "a", now=10.0, ttl_s=10.0)
    store.release_lease("leader", "a")
    before = (store.instances(), store.requests(), store.challenges(), audit_count(store))
    with pytest.raises(LeaseLost) as e:
        FENCED_WRITES[write](store)
    assert (e.value.holder, e.value.epoch, e.value.current_holder, e.value.current_epoch) == ("a", 1, "", 1)
    assert (store.instances(), store.requests(), store.challenges(), audit_count(store)) == before
    # Acquiring again (a new epoch) lifts the refusal.
    assert store.try_acquire_lease("leader", "a", now=11.0, ttl_s=10.0)
    FENCED_WRITES[write](store)


def test_unfenced_writes_still_work_for_a_store_whose_lease_was_lost(store: Store) -> None:
    """Bookkeeping that leads to no action (audit, backoff, mirrors, status) is not fenced."""
    assert store.try_acquire_lease("leader", "a", now=10.0, ttl_s=10.0)
    store.release_lease("leader", "a")
    store.audit(at=1.0, actor="c", kind="k", subject="s", action="a", reason="r")
    store.record_offer_failure("aws:x", now=1.0, base_s=1.0, cap_s=10.0, error="e")
    store.record_mirror("img", "aws/us-east-1", "sha256:a", now=1.0)
    store.set_controller_status({"at": 1.0}, now=1.0)
    assert store.get_mirror("img", "aws/us-east-1") is not None


def test_reads_return_frozen_values(store: Store) -> None:
    store.create_intent(inst(), now=1.0, actor="ctl", reason="r")
    got = store.get_instance("b-1")
    assert got is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.state = I.RUNNING  # type: ignore[misc]
    store.transition_instance("b-1", I.LAUNCHING, now=2.0, actor="ctl", reason="r")
    assert got.state is I.PLANNED  # an earlier read is a snapshot


# ---- fencing between two processes (SQL only: a MemoryStore lives in one process) -------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_sql_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore]]:
    url = f"sqlite:///{tmp_path}/db/burst.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    a, b = SqlStore.from_url(url), SqlStore.from_url(url, upgrade=False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("write", sorted(FENCED_WRITES))
def test_a_stalled_leaders_writes_are_refused_after_a_takeover(two_sql_stores: tuple[SqlStore, SqlStore], write: str) -> None:
    old, new = two_sql_stores
    _fence_world(old)
    assert old.try_acquire_lease("leader", "old", now=10.0, ttl_s=5.0)
    old.check_fence()  # fine while it leads
    # old stalls past its TTL; new takes over and acts
    assert new.try_acquire_lease("leader", "new", now=16.0, ttl_s=5.0)
    before = (old.instances(), old.requests(), old.challenges(), audit_count(old))
    with pytest.raises(LeaseLost) as e:
        FENCED_WRITES[write](old)
    assert (e.value.holder, e.value.epoch, e.value.current_holder, e.value.current_epoch) == ("old", 1, "new", 2)
    assert (old.instances(), old.requests(), old.challenges(), audit_count(old)) == before
    FENCED_WRITES[write](new)  # the new leader is not affected
    # old wakes up and asks for the lease: it is held, so it is a standby.
    assert old.try_acquire_lease("leader", "old", now=17.0, ttl_s=5.0) is False


def test_a_restarted_process_reclaiming_its_holder_id_fences_the_old_one(
    two_sql_stores: tuple[SqlStore, SqlStore],
) -> None:
    """Same BURST_HOLDER_ID, new process (a restart while the old one was frozen): the lease is
    reclaimed at once, but under a new epoch, so the frozen one cannot act when it thaws."""
    old, new = two_sql_stores
    _fence_world(old)
    assert old.try_acquire_lease("leader", "ctl", now=10.0, ttl_s=60.0)
    assert new.try_acquire_lease("leader", "ctl", now=11.0, ttl_s=60.0)
    assert new.lease("leader") == Lease("leader", "ctl", 71.0, 2)
    with pytest.raises(LeaseLost):
        old.transition_instance("b-1", I.LAUNCHING, now=12.0, actor="ctl", reason="r")
    new.transition_instance("b-1", I.LAUNCHING, now=12.0, actor="ctl", reason="r")
    # and the renewals of the new one keep its epoch
    assert new.try_acquire_lease("leader", "ctl", now=20.0, ttl_s=60.0)
    assert new.lease("leader") == Lease("leader", "ctl", 80.0, 2)
