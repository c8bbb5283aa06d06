"""Issue 13 budgets in the controller: a hard cap holds every new launch back (never running
work), says so on every surface (budget lines, ``burst_budget_blocked``, one admin notice), and
lets launches go ahead again once the cap is raised; a soft level is told to the admins once per
crossing. The world is the controller test world (tests/core/world.py) with the live wiring's
budget hooks: ``budget_for`` (the launch check in the intent's transaction) and the tick's gate
(``BudgetBook.watch``)."""

from __future__ import annotations

from pathlib import Path

from burst.budgets import BudgetBook
from burst.config import BudgetSettings
from burst.domain import InstanceState, Launch, Purpose
from burst.metrics import REGISTRY
from policies.budget import Level
from tests.core.world import AWS_AZ1, T0, World

PROJECT_S = 900.0  # an overflow launch of the $32/h offer is projected at $8


def blocked(name: str) -> float | None:
    return REGISTRY.get_sample_value("burst_budget_blocked", {"budget": name})


def world_with(budgets: dict[str, object]) -> tuple[World, BudgetBook]:
    w = World(nodes=1, offers=(AWS_AZ1,))
    book = BudgetBook(w.store, BudgetSettings.model_validate(budgets), project_s=PROJECT_S, late_s=60.0,
                      notifier=w.notifier)
    # what burst.wiring.build_runtime hands the controller
    w.controller.executor.budget_for = book.checks_for
    w.controller.request_gate = book.watch
    return w, book


def overflow_instances(w: World) -> list[str]:
    return [i.id for i in w.store.live_instances() if i.purpose is Purpose.OVERFLOW]


def test_a_hard_cap_holds_launches_back_says_why_and_resumes_when_raised() -> None:
    w, book = world_with({"day_usd": 5.0})
    w.submit("onprem", 8, 10 * 3600.0)
    w.submit("waits", 8, 3600.0)
    w.run(T0 + 600.0)
    assert overflow_instances(w) == [] and w.launched() == 0
    errors = [e for r in w.results for e in r.executed.errors]
    assert errors and all("budget 'budget:site:day'" in e for e in errors)
    (state,) = book.states(w.now())
    assert state.level is Level.HARD and state.blocked
    assert "HARD CAP REACHED: no new cloud capacity until the next day (UTC) or a raised cap" in state.line()
    assert blocked("site:day") == 1.0
    # the admins hear it once (the crossing) and once from the executor, not every tick
    texts = [t for a, t in w.notifier.sent if a == "admins"]
    assert sum("HARD CAP REACHED" in t for t in texts) == 1
    assert sum("launch held back" in t for t in texts) == 1
    assert [r.action for r in w.store.audit_rows(kind="budget")] == ["hard-reached"]

    book.set_limit("admin", "site:day", "hard", "100", now=w.now())
    w.run(T0 + 660.0)
    assert len(overflow_instances(w)) == 1
    w.run(T0 + 720.0)
    assert blocked("site:day") == 0.0 and book.states(w.now())[0].level is Level.OK


def test_running_work_is_never_stopped_by_a_cap_lowered_under_it() -> None:
    w, book = world_with({"day_usd": 100.0})
    w.submit("onprem", 8, 10 * 3600.0)
    w.submit("first", 8, 4 * 3600.0)
    w.run(T0 + 900.0)
    (inst,) = overflow_instances(w)
    book.set_limit("admin", "site:day", "hard", "1", now=w.now())
    w.submit("second", 8, 3600.0)
    w.run(T0 + 1800.0)
    assert overflow_instances(w) == [inst]  # nothing new, and the running one still runs
    assert w.store.get_instance(inst).state is not InstanceState.TERMINATED  # type: ignore[union-attr]
    assert book.states(w.now())[0].blocked


def test_a_team_cap_holds_only_that_teams_launches() -> None:
    w, book = world_with({"teams": {"ml": {"day_usd": 5.0}}, "team_of": {"ml-gpu": "ml"}})
    base = Launch(intent_id="x", offer=AWS_AZ1, purpose=Purpose.OVERFLOW, reason="r", team="ml-gpu")
    (check,) = book.checks_for(base, T0)
    assert (check.scope, check.team, check.teams, check.cap_usd, check.asked_usd) == (
        "budget:team:ml:day", "ml", ("ml-gpu",), 5.0, 8.0)
    other = Launch(intent_id="y", offer=AWS_AZ1, purpose=Purpose.OVERFLOW, reason="r", team="vision")
    assert book.checks_for(other, T0) == ()


def test_an_on_demand_launch_is_projected_for_its_requested_time() -> None:
    _, book = world_with({"month_usd": 1000.0})
    od = Launch(intent_id="od", offer=AWS_AZ1, purpose=Purpose.ON_DEMAND, reason="r", expires_at=T0 + 2 * 3600.0)
    (check,) = book.checks_for(od, T0)
    assert round(check.asked_usd, 6) == round(32.0 * (2 * 3600.0 + 60.0) / 3600.0, 6)


def test_the_soft_level_is_told_once_per_crossing() -> None:
    w, book = world_with({"soft_day_usd": 5.0, "day_usd": 1000.0})
    w.submit("onprem", 8, 10 * 3600.0)
    w.submit("waits", 8, 3600.0)
    w.run(T0 + 900.0)
    assert overflow_instances(w)
    soft = [t for a, t in w.notifier.sent if a == "admins" and "past the soft level" in t]
    assert len(soft) == 1 and "site:day" in soft[0]
    assert [r.action for r in w.store.audit_rows(kind="budget")] == ["soft-reached"]
    # a changed soft level is a new crossing
    book.set_limit("admin", "site:day", "soft", "6", now=w.now())
    w.run(T0 + 960.0)
    assert len([t for a, t in w.notifier.sent if "past the soft level" in t]) == 2


def test_the_live_wiring_checks_budgets_with_each_intent(tmp_path: Path) -> None:
    from burst.store.memory import MemoryStore
    from burst.wiring import build_runtime
    from tests.unit.test_wiring_capabilities import _cfg

    store = MemoryStore()
    rt = build_runtime(_cfg(tmp_path, budget={"month_usd": 50.0, "teams": {"ml": {"day_usd": 20.0}}}), store=store)
    fn = rt.controller.executor.budget_for
    assert fn is not None
    checks = fn(Launch(intent_id="x", offer=AWS_AZ1, purpose=Purpose.OVERFLOW, reason="r", team="ml"), T0)
    assert sorted(c.scope for c in checks) == ["budget:site:month", "budget:team:ml:day"]  # type: ignore[union-attr]
    assert rt.controller.caps.month_usd == 0.0  # the intent's check replaces the planner's estimate
    assert rt.controller.request_gate is not None
    rt.controller.request_gate(T0)  # meters the budgets
    assert blocked("site:month") == 0.0


def test_a_daily_cap_lets_launches_go_again_the_next_day() -> None:
    """T0 is 22:13 UTC. The first overflow instance fits the $10 day cap but runs up $20 or so
    (running work is never stopped); the next launch is held until midnight, then goes ahead."""
    w, book = world_with({"day_usd": 10.0})
    w.submit("onprem", 8, 10 * 3600.0)
    w.submit("first", 8, 1800.0)
    w.run(T0 + 45 * 60.0)
    assert w.launched() == 1
    w.submit("second", 8, 3600.0)
    midnight = 1_700_006_400.0  # 2023-11-15T00:00:00Z
    w.run(midnight - 30.0)
    assert w.launched() == 1 and book.states(w.now())[0].blocked
    w.run(midnight + 60.0)
    assert w.launched() == 2
