"""Issue 13, budgets under the lock, beyond launches: an on-demand extension, a new request at a
soft level, ``budget set`` and the once-per-crossing notice are each decided under the budget's
lock row, so concurrent callers (each with its own SqlStore, as separate bot workers and
controllers have) cannot together do what none of them alone may. On real PostgreSQL and SQLite
(and the memory store where it is one process's answer).

Prices: the bundled catalog's cheapest aws A100 offer is a p4d.24xlarge at $21.957642/h, so a
``1xA100 for 1h`` request is about $21.96, and a live instance of it with an hour left is
projected at $21.957642 x (3600 s + the 60 s termination lag) / 3600 = $22.32.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any

import pytest

from burst.budgets import BudgetBook, BudgetInputError
from burst.config import BudgetSettings
from burst.domain import (
    Instance,
    InstanceState,
    Launch,
    Market,
    Offer,
    OnDemandRequest,
    Purpose,
    RequestState,
)
from burst.errors import BudgetExceeded
from burst.ondemand.reconcile import reconcile_requests
from burst.ondemand.service import OnDemandService, RequestArgs, ServiceError
from burst.ports import Store
from burst.store import migrate
from burst.store.memory import MemoryStore
from burst.store.sql import SqlStore
from tests.bot.conftest import ADMIN, T0, USER, ManualClock, bot_offers, make_settings

PRICE = 21.957642  # $/h of the p4d.24xlarge a 1xA100 request is quoted on
LIVE_HOUR_USD = PRICE * 3660.0 / 3600.0  # $22.32: a live instance with an hour left, with the lag
APPROVED = (RequestState.AUTO_APPROVED, RequestState.APPROVED)


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    u = str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else f"sqlite:///{tmp_path}/b.db"
    migrate.upgrade(u)
    return u


@pytest.fixture
def stores(url: str) -> Iterator[Callable[[int], list[Store]]]:
    """``stores(n)``: n SqlStores on the one database, each with its own engine and pool."""
    made: list[SqlStore] = []

    def make(n: int) -> list[Store]:
        new = [SqlStore.from_url(url, upgrade=False) for _ in range(n)]
        for s in new:
            s.requests(user="warm-up")  # a connection in each pool before the start line
        made.extend(new)
        return list(new)

    yield make
    for s in made:
        s.close()


def budgets(**kw: Any) -> BudgetSettings:
    return BudgetSettings.model_validate(kw)


def book(store: Store, settings: BudgetSettings) -> BudgetBook:
    return BudgetBook(store, settings, project_s=900.0, late_s=60.0)


def service(store: Store, settings: BudgetSettings, **teams: str) -> OnDemandService:
    od = make_settings(teams={USER: "vision", **teams})
    return OnDemandService(store, od, bot_offers(), ManualClock(T0), budgets=book(store, settings))


def ready(store: Store, n: int, user: str = USER, team: str = "vision", hours_left: float = 1.0) -> OnDemandRequest:
    """A READY 1xA100 request of ``user`` whose instance is running with ``hours_left`` to go."""
    inst = Instance(id=f"od-{n}", cloud="aws", region="us-east-1", zone="", instance_type="p4d.24xlarge",
                    market=Market.ON_DEMAND, purpose=Purpose.ON_DEMAND, gpus=8, gpu_model="A100",
                    price_per_hour=PRICE, owner=user, team=team, created_at=T0, request_id=f"r-{n:06d}",
                    expires_at=T0 + hours_left * 3600.0)
    store.create_intent(inst, now=T0, actor="t", reason="t")
    store.transition_instance(inst.id, InstanceState.LAUNCHING, now=T0, actor="t", reason="t", launched_at=T0,
                              cloud_id=f"i-{n}")
    store.transition_instance(inst.id, InstanceState.RUNNING, now=T0, actor="t", reason="t")
    req = OnDemandRequest(id=f"r-{n:06d}", user=user, team=team, gpus=1, gpu_model="A100", hours=hours_left,
                          cloud="aws", state=RequestState.READY, created_at=T0, expires_at=T0 + hours_left * 3600.0,
                          instance_id=inst.id)
    return store.add_request(req, now=T0, actor="t")


def together(n: int, one: Callable[[int], object]) -> list[BaseException]:
    """Run ``one(0..n-1)`` in threads released together; returns what they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            one(i)
        except BaseException as e:  # noqa: BLE001 - the caller looks at them
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


# ---- extensions ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    u = str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else f"sqlite:///{tmp_path}/b.db"
    store = SqlStore.from_url(u)
    yield store
    store.close()


def test_an_extension_past_a_hard_cap_is_refused_even_for_an_admin_and_says_by_how_much(any_store: Store) -> None:
    store = any_store
    svc = service(store, budgets(day_usd=40.0))
    req = ready(store, 1)
    for who in (USER, ADMIN):
        with pytest.raises(ServiceError) as e:
            svc.extend(who, req.id, 1.0)  # $22.32 committed + $21.96 > $40 by $4.28
        assert str(e.value) == (
            "Extension refused: the site:day budget's hard cap of $40.00 would be passed by $4.28 ($22.32 committed, "
            "this extension adds $21.96). Your instance keeps its current time limit; an admin can raise the cap "
            "(`/burst budget set`)."
        )
    assert store.get_request(req.id) == req  # nothing changed
    assert store.get_instance("od-1").expires_at == T0 + 3600.0  # type: ignore[union-attr]
    got = svc.extend(USER, req.id, 0.5)  # + $10.98: $33.30 fits under $40
    assert got.expires_at == T0 + 5400.0 == store.get_instance("od-1").expires_at  # type: ignore[union-attr]
    assert [r.action for r in store.audit_rows(subject="od-1", kind="instance", limit=1)] == ["extended"]


def test_concurrent_extensions_cannot_pass_a_hard_cap_together(stores: Callable[[int], list[Store]]) -> None:
    """Six users extend by 30 min ($10.98 each) at once with room for two under the cap; each
    with its own store. Unlocked, all six read the same committed spend and all six pass."""
    ss = stores(6)
    users = [f"U0USER1{i:02d}" for i in range(6)]
    cap = 6 * LIVE_HOUR_USD + 2 * PRICE * 0.5 + 5.0
    settings = budgets(day_usd=round(cap, 2))
    reqs = [ready(ss[0], i, user=users[i]) for i in range(6)]
    svcs = [service(ss[i], settings, **{users[i]: "vision"}) for i in range(6)]
    errors = together(6, lambda i: svcs[i].extend(users[i], reqs[i].id, 0.5))
    assert len(errors) == 4 and all(isinstance(e, ServiceError) and "hard cap" in str(e) for e in errors), errors
    extended = [i for i in ss[0].live_instances() if i.expires_at == T0 + 5400.0]
    assert len(extended) == 2
    assert book(ss[0], settings).states(T0)[0].committed_usd <= round(cap, 2) + 1e-6


def test_past_a_soft_level_an_extension_waits_for_an_admin_under_the_lock(stores: Callable[[int], list[Store]]) -> None:
    """Four live instances ($22.32 each) and a soft level with room for one $10.98 extension:
    four users extend at once; the locked check sees the extensions already written, so one
    passes and three are told to ask an admin, who may."""
    ss = stores(4)
    users = [f"U0USER2{i:02d}" for i in range(4)]
    settings = budgets(soft_day_usd=round(4 * LIVE_HOUR_USD + PRICE * 0.5 + 1.0, 2), day_usd=1000.0)
    reqs = [ready(ss[0], i, user=users[i]) for i in range(4)]
    svcs = [service(ss[i], settings, **{users[i]: "vision"}) for i in range(4)]
    errors = together(4, lambda i: svcs[i].extend(users[i], reqs[i].id, 0.5))
    assert len(errors) == 3 and all("soft level" in str(e) and "Ask an admin" in str(e) for e in errors), errors
    left = next(r for r in reqs if ss[0].get_request(r.id).hours == 1.0)  # type: ignore[union-attr]
    assert svcs[0].extend(ADMIN, left.id, 0.5).hours == 1.5  # an admin may pass a soft level


# ---- new requests at a soft level ------------------------------------------------------------------


def test_concurrent_requests_that_pass_a_soft_level_together_are_not_all_auto_approved(
    stores: Callable[[int], list[Store]],
) -> None:
    """Soft level $30: one $21.96 request fits, two do not. Six users ask at once, each with
    its own store: the store counts the requests approved but not launched yet under the
    budget's lock, so exactly one is auto-approved and five need an admin, told why."""
    ss = stores(6)
    users = [f"U0USER3{i:02d}" for i in range(6)]
    settings = budgets(soft_day_usd=30.0, day_usd=1000.0)
    svcs = [service(ss[i], settings, **{users[i]: "vision"}) for i in range(6)]
    results: list[Any] = []
    errors = together(6, lambda i: results.append(svcs[i].request(users[i], RequestArgs(1, "A100", hours=1, cloud="aws"))))
    assert not errors, errors
    states = sorted(str(r.state) for r in ss[0].requests())
    assert states == ["auto-approved"] + ["requested"] * 5
    held = [r for r in results if r.request.state is RequestState.REQUESTED]
    assert len(held) == 5 and all(r.needs_approval and not r.verdict.auto_approve for r in held)
    assert all(any("site:day budget would pass its soft level of $30.00" in x for x in r.verdict.reasons) for r in held)


# ---- budget set ------------------------------------------------------------------------------------


def test_concurrent_budget_sets_keep_every_change_and_the_soft_not_above_hard_rule(
    stores: Callable[[int], list[Store]],
) -> None:
    ss = stores(8)
    settings = budgets()
    books = [book(s, settings) for s in ss]
    errors = together(8, lambda i: books[i].set_limit(ADMIN, f"team:t{i}:day", "hard", str(10 + i), now=T0))
    assert not errors, errors
    assert {lim.name: lim.hard_usd for lim in books[0].limits()} == {f"team:t{i}:day": 10.0 + i for i in range(8)}
    assert len(ss[0].audit_rows(kind="budget", limit=100)) == 8
    # A soft level of $50 and a hard cap of $40 set at once on a budget that had neither: each
    # alone is fine; together they break the rule, so exactly one is refused.
    pair = [("soft", "50"), ("hard", "40")]
    errors = together(2, lambda i: books[i].set_limit(ADMIN, "site:day", *pair[i], now=T0))
    assert len(errors) == 1 and isinstance(errors[0], BudgetInputError), errors
    site = next(lim for lim in books[0].limits() if lim.name == "site:day")
    assert (site.soft_usd, site.hard_usd) in {(50.0, 0.0), (0.0, 40.0)}


# ---- once per crossing -----------------------------------------------------------------------------


class Told:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def notify(self, audience: str, text: str) -> None:
        with self._lock:
            self.lines.append(f"{audience}: {text}")


def test_a_soft_crossing_is_told_once_however_many_watch_at_once(stores: Callable[[int], list[Store]]) -> None:
    ss = stores(4)
    settings = budgets(soft_day_usd=20.0, day_usd=1000.0)
    ready(ss[0], 1)  # $22.32 committed: past the $20 soft level
    told = Told()
    books = [BudgetBook(s, settings, project_s=900.0, late_s=60.0, notifier=told) for s in ss]
    errors = together(4, lambda i: books[i].watch(T0))
    assert not errors, errors
    assert len(told.lines) == 1 and "past the soft level" in told.lines[0]
    assert [r.action for r in ss[0].audit_rows(subject="site:day", kind="budget")] == ["soft-reached"]
    books[0].watch(T0 + 60.0)
    assert len(told.lines) == 1  # the same crossing: not told again


# ---- the known limits (docs/operations.md), shown honestly -----------------------------------------


def test_an_overflow_instance_that_keeps_running_passes_the_cap_and_budget_show_says_by_how_much() -> None:
    """Overflow is projected ``reserve_hours_per_launch`` ahead (15 min here): a $32/h launch is
    checked at $8 against a $10 day cap. Running work is never stopped, so an hour later it is
    committed to $40; the budget line says the cap is reached and by how much it is passed, and
    the next launch is refused."""
    store = MemoryStore()
    b = book(store, budgets(day_usd=10.0))
    o = Offer("aws", "p4d", "us-east-1", "us-east-1a", "A100", 8, 320.0, 32.0, Market.ON_DEMAND)
    a = Launch(intent_id="ov-1", offer=o, purpose=Purpose.OVERFLOW, reason="queue", team="ml")
    inst = Instance(id="ov-1", cloud="aws", region="us-east-1", zone="us-east-1a", instance_type="p4d",
                    market=Market.ON_DEMAND, purpose=Purpose.OVERFLOW, gpus=8, gpu_model="A100", price_per_hour=32.0,
                    owner="", team="ml", created_at=T0)
    store.create_intent(inst, now=T0, actor="t", reason="t", budget=b.checks_for(a, T0))
    store.transition_instance("ov-1", InstanceState.LAUNCHING, now=T0, actor="t", reason="t", launched_at=T0, cloud_id="i")
    (state,) = b.states(T0 + 3600.0)
    assert state.committed_usd == pytest.approx(40.0) and state.blocked
    assert state.line().endswith("running work continues (committed $30.00 over the cap by work already running)")
    a2 = Launch(intent_id="ov-2", offer=o, purpose=Purpose.OVERFLOW, reason="queue", team="ml")
    with pytest.raises(BudgetExceeded, match="budget 'budget:site:day'"):
        store.create_intent(dataclass_replace(inst, id="ov-2"), now=T0 + 3600.0, actor="t", reason="t",
                            budget=b.checks_for(a2, T0 + 3600.0))
    assert [i.id for i in store.live_instances()] == ["ov-1"]  # still running


def test_an_on_demand_instance_that_boots_late_carries_its_commitment_past_what_was_checked() -> None:
    """A 1 h request is checked at 1 h + the 30 min boot margin + the lag. Its time limit starts
    when it is ready: one ready 45 min after its intent is committed to 1 h 45 min + the lag, 15
    min more than was checked; the budget line shows the cap passed."""
    store = MemoryStore()
    checked = PRICE * (3600.0 + 1800.0 + 60.0) / 3600.0
    b = book(store, budgets(day_usd=round(checked, 2) + 0.01))
    inst = Instance(id="od-1", cloud="aws", region="us-east-1", zone="", instance_type="p4d.24xlarge",
                    market=Market.ON_DEMAND, purpose=Purpose.ON_DEMAND, gpus=8, gpu_model="A100", price_per_hour=PRICE,
                    owner=USER, team="vision", created_at=T0, request_id="r-000001", expires_at=T0 + 5400.0)
    o = Offer("aws", "p4d.24xlarge", "us-east-1", "", "A100", 8, 320.0, PRICE, Market.ON_DEMAND)
    a = Launch(intent_id="od-1", offer=o, purpose=Purpose.ON_DEMAND, reason="approved", owner=USER, team="vision",
               request_id="r-000001", expires_at=T0 + 5400.0)
    store.create_intent(inst, now=T0, actor="t", reason="t", budget=b.checks_for(a, T0))
    store.add_request(OnDemandRequest(id="r-000001", user=USER, team="vision", gpus=1, gpu_model="A100", hours=1.0,
                                      cloud="aws", state=RequestState.PROVISIONING, created_at=T0, instance_id="od-1"),
                      now=T0, actor="t")
    late = T0 + 2700.0
    store.transition_instance("od-1", InstanceState.LAUNCHING, now=late, actor="t", reason="t", launched_at=T0,
                              cloud_id="i")
    store.transition_instance("od-1", InstanceState.RUNNING, now=late, actor="t", reason="t")
    reconcile_requests(store, late, None)
    assert store.get_request("r-000001").state is RequestState.READY  # type: ignore[union-attr]
    (state,) = b.states(late)
    assert state.committed_usd == pytest.approx(PRICE * (2700.0 + 3600.0 + 60.0) / 3600.0)
    assert state.committed_usd > b.limits()[0].hard_usd and state.blocked
    assert "over the cap by work already running" in state.line()
