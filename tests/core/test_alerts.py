"""Alerts are rate-limited, and an offer whose instances never join cools down."""

from __future__ import annotations

from burst.domain import Notify, Plan
from tests.core.world import T0, TICK, World


def test_the_same_alert_goes_out_once_per_hour() -> None:
    w = World()
    ex = w.controller.executor
    plan = Plan((Notify("admins", "burst budget reached: 1 launch held back", "budget cap"),))
    for k in range(120):  # an hour of 30 s ticks
        ex.execute(plan, T0 + k * TICK)
    assert len(w.notifier.sent) == 1
    ex.execute(plan, T0 + 3600)
    assert len(w.notifier.sent) == 2
    other = Plan((Notify("admins", "something else", "other reason"),))
    ex.execute(other, T0 + 3601)
    assert len(w.notifier.sent) == 3


def test_instances_that_never_join_cool_their_offer_and_alert_once() -> None:
    # boot takes longer than the join timeout: every instance of the offer is given back
    w = World(nodes=1, provider_kw={"boot_s": 10_000.0})
    w.submit("fill", 8, 100_000)
    w.submit("j1", 8, 600)
    first_offer = None
    for k in range(1, 200):
        res = w.tick(T0 + k * TICK)
        for a in res.plan.actions:
            if type(a).__name__ == "Launch" and first_offer is None:
                first_offer = a.offer.key  # type: ignore[attr-defined]
    assert first_offer is not None
    # the first offer timed out and cooled down, so later launches moved to other offers
    offers_used = {i.offer_key for i in w.store.instances()}
    assert len(offers_used) >= 2, offers_used
    alerts = [t for a, t in w.notifier.sent if a == "admins" and "keep failing to join" in t]
    assert len(alerts) <= len(offers_used)
    assert all(r.reason for r in w.store.audit_rows(kind="instance", limit=50))
