"""Issue 13 budgets in Slack, through real Bolt over signed HTTP: ``/burst budget set`` (admins
only; a refusal is audited and changes nothing; bad input names what is wrong), ``/burst budget``
and ``/burst status`` at a hard cap, and a request past a soft level needing an admin."""

from __future__ import annotations

from typing import Any

import pytest

from burst.budgets import SETTINGS_USER, BudgetBook
from burst.config import BudgetSettings
from burst.domain import Instance, InstanceState, Market, Purpose, RequestState
from burst.ondemand.service import OnDemandService
from burst.ondemand.settings import OnDemandSettings
from burst.store.memory import MemoryStore
from tests.bot.conftest import ADMIN, T0, USER, ManualClock, Poster

BUDGETS: dict[str, Any] = {"soft_day_usd": 20.0, "day_usd": 40.0, "teams": {"vision": {"month_usd": 500.0}}}


@pytest.fixture
def book(store: MemoryStore) -> BudgetBook:
    return BudgetBook(store, BudgetSettings.model_validate(BUDGETS), project_s=900.0, late_s=60.0)


@pytest.fixture
def service(store: MemoryStore, settings: OnDemandSettings, offers: list[Any], clock: ManualClock,
            book: BudgetBook) -> OnDemandService:
    return OnDemandService(store, settings, offers, clock, budgets=book)


def running(store: MemoryStore, usd_per_hour: float, hours: float, team: str = "vision") -> None:
    """A live on-demand instance committed to about ``usd_per_hour * hours``."""
    i = f"od-{len(store.live_instances())}"
    store.create_intent(Instance(id=i, cloud="aws", region="us-east-1", zone="", instance_type="p4d",
                                 market=Market.ON_DEMAND, purpose=Purpose.ON_DEMAND, gpus=8, gpu_model="A100",
                                 price_per_hour=usd_per_hour, owner=USER, team=team, created_at=T0,
                                 expires_at=T0 + hours * 3600.0), now=T0, actor="t", reason="r")
    store.transition_instance(i, InstanceState.LAUNCHING, now=T0, actor="t", reason="r", launched_at=T0, cloud_id="i")


def test_an_admin_sets_a_budget_and_it_is_audited(post: Poster, store: MemoryStore, book: BudgetBook) -> None:
    _, _, k = post.command("budget set team:vision:day soft 15", user=ADMIN)
    reply = post.reply(k)
    assert "Budget set (recorded in the audit): team:vision:day" in reply and "soft $15.00" in reply
    assert [(lim.name, lim.soft_usd, lim.hard_usd) for lim in book.limits() if lim.name == "team:vision:day"] == [
        ("team:vision:day", 15.0, 0.0)]
    (row,) = store.audit_rows(kind="budget")
    assert (row.actor, row.subject, row.action) == (ADMIN, "team:vision:day", "set")


def test_a_non_admin_is_refused_audited_and_nothing_changes(post: Poster, store: MemoryStore) -> None:
    _, _, k = post.command("budget set site:day hard 1000000", user=USER)
    assert post.reply(k) == ":no_entry: Only burst admins can set budgets. This attempt was recorded."
    (denied,) = store.audit_rows(kind="admin")
    assert (denied.actor, denied.action, denied.subject) == (USER, "denied", "site:day")
    assert store.get_user_setting(SETTINGS_USER, "limits") is None and store.audit_rows(kind="budget") == []


@pytest.mark.parametrize(("text", "words"), [
    ("budget set site:week hard 5", ("site:week", "Nothing was changed")),
    ("budget set site:day hard lots", ("amount 'lots'", "Nothing was changed")),
    ("budget set site:day hard -5", ("amount '-5'",)),
    ("budget set site:day soft 50", ("soft level $50.00 would be above the hard cap $40.00",)),
    ("budget set site:day medium 5", ("`medium` is not a level",)),
    ("budget set site:day", ("Say which budget",)),
])
def test_bad_budget_input_names_what_is_wrong_and_changes_nothing(
    post: Poster, store: MemoryStore, text: str, words: tuple[str, ...]
) -> None:
    _, body, k = post.command(text, user=ADMIN)
    reply = body + post.reply(k) if not body else body
    for w in words:
        assert w in reply, (w, reply)
    assert "Traceback" not in reply
    assert store.get_user_setting(SETTINGS_USER, "limits") is None and store.audit_rows(kind="budget") == []


def test_budget_and_status_say_why_at_a_hard_cap(post: Poster, store: MemoryStore) -> None:
    running(store, 40.0, 1.0)
    _, _, k = post.command("budget")
    reply = post.reply(k)
    assert "site:day: spent $0.67, committed $40.67 (soft $20.00, hard $40.00) - HARD CAP REACHED: no new cloud " \
           "capacity until the next day (UTC) or a raised cap; running work continues" in reply
    assert "team:vision:month: spent $0.67, committed $40.67 (hard $500.00)" in reply
    _, _, k = post.command("status")
    status = post.reply(k)
    assert "*Budget:* site:day" in status and "HARD CAP REACHED" in status


def test_past_the_soft_level_a_request_needs_an_admin(post: Poster, store: MemoryStore, book: BudgetBook) -> None:
    book.set_limit(ADMIN, "site:day", "hard", "100", now=T0)
    book.set_limit(ADMIN, "site:day", "soft", "30", now=T0)
    _, _, k = post.command("request 1xA100 for 1h on aws")  # about $21.96
    assert "approved" in post.reply(k)  # below the soft level: within quota, auto-approved
    running(store, 10.0, 1.0, team="nlp")  # another team's spend takes the site past its soft level
    _, _, k = post.command("request 1xA100 for 1h on aws")
    reply = post.reply(k)
    assert "needs an admin" in reply and "the site:day budget is past its soft level of $30.00" in reply
    assert [r.state for r in store.requests()].count(RequestState.REQUESTED) == 1


def test_an_extension_past_a_budget_needs_an_admin(service: OnDemandService, store: MemoryStore, clock: ManualClock,
                                                   book: BudgetBook) -> None:
    from burst.ondemand.service import RequestArgs, ServiceError

    book.set_limit(ADMIN, "site:day", "hard", "100", now=T0)
    book.set_limit(ADMIN, "site:day", "soft", "30", now=T0)
    r = service.request(USER, RequestArgs(1, "A100", hours=1, cloud="aws")).request  # about $21.96
    now = clock.now()
    store.transition_request(r.id, RequestState.PROVISIONING, now=now, actor="t", reason="t")
    store.transition_request(r.id, RequestState.READY, now=now, actor="t", reason="t", expires_at=now + 3600)
    got = service.extend(USER, r.id, 0.5)  # about $11: no budget passed
    assert got.hours == 1.5
    running(store, 25.0, 1.0, team="nlp")
    with pytest.raises(ServiceError, match="site:day budget is past its soft level of \\$30.00"):
        service.extend(USER, r.id, 0.5)
    assert store.get_request(r.id).hours == 1.5  # type: ignore[union-attr]
    assert service.extend(ADMIN, r.id, 0.5).hours == 2.0  # an admin may, audited as over quota
