"""The spend ledger's rules, shared by every store: what an instance cost once it is terminated.

Both stores append exactly one :class:`burst.ports.SpendEntry` per instance when it reaches
TERMINATED, and price live instances the same way, so the two agree to the cent. The budget check of ``create_intent`` (:func:`budget_breach`) is
here too, so both stores decide it identically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from burst.domain import Instance, Offer, OnDemandRequest, RequestState, Timestamp
from burst.errors import BudgetExceeded
from burst.ports import BudgetArg, BudgetCheck, SpendEntry
from policies.requests import offers_for_request

BILLING_MINIMUM_S = 60.0  # clouds bill at least a minute per instance that ran
PENDING_STATES = (RequestState.APPROVED, RequestState.AUTO_APPROVED)
"""Requests cleared to launch whose intent is not written yet (the controller moves a request to
PROVISIONING after its intent): their cost is not in any instance's projection yet."""


def ledger_entry(inst: Instance) -> SpendEntry:
    """The ledger entry of a terminated instance: from launch (or termination, when it never
    launched) to termination; an instance that never launched cost nothing."""
    assert inst.terminated_at is not None
    start = inst.launched_at if inst.launched_at is not None else inst.terminated_at
    return SpendEntry(
        instance_id=inst.id,
        cloud=inst.cloud,
        region=inst.region,
        purpose=str(inst.purpose),
        team=inst.team,
        owner=inst.owner,
        start=start,
        end=inst.terminated_at,
        usd=inst.cost(inst.terminated_at, BILLING_MINIMUM_S) if inst.launched_at is not None else 0.0,
    )


# ---- budget checks (both stores run these inside their locked transaction) -------------------


def checks_of(budget: BudgetArg) -> tuple[BudgetCheck, ...]:
    """``create_intent``'s budget argument as checks in lock order (by scope, so two writers
    that lock several scopes never wait on each other crosswise)."""
    if budget is None:
        return ()
    if isinstance(budget, BudgetCheck):
        return (budget,)
    return tuple(sorted(budget, key=lambda c: c.scope))


def projected_usd(inst: Instance, now: Timestamp, project_s: float, late_s: float = 0.0) -> float:
    """What a live instance is expected to cost in all: from its launch (its intent, before it
    launched) to its expected end, with the billing minimum. The expected end is its expiry
    (on-demand: the time limit) plus ``late_s`` (the ticks the controller takes to see the
    limit passed and the cloud to confirm the termination) or, without one, ``now + project_s``
    (overflow: at least the time before its idleness is noticed); never before ``now``, so this
    is never less than what the instance has accrued."""
    start = inst.launched_at if inst.launched_at is not None else inst.created_at
    end = inst.expires_at + late_s if inst.expires_at is not None else now + project_s
    return max(BILLING_MINIMUM_S, max(end, now) - start) * inst.price_per_hour / 3600.0


def in_scope(check: BudgetCheck, team: str) -> bool:
    """Does an instance or ledger entry of ``team`` count against ``check``?"""
    return not check.team or team == check.team or team in check.teams


def budget_breach(check: BudgetCheck, ledger_usd: float, live: Iterable[Instance], now: Timestamp) -> BudgetExceeded | None:
    """The check on what the store read under the scope's lock: ``ledger_usd`` (entries of the
    scope ending since ``check.period_start``) and ``live`` (every instance not terminated; this
    filters to the scope). None when the intent fits."""
    mine = [i for i in live if in_scope(check, i.team)]
    if check.project_live_s is not None:
        committed = ledger_usd + sum(projected_usd(i, now, check.project_live_s, check.expiry_late_s) for i in mine)
    else:
        committed = ledger_usd + sum(i.cost(now, BILLING_MINIMUM_S) for i in mine if i.launched_at is not None)
        committed += check.reserve_per_live_usd * len(mine)
    if committed + check.asked_usd > check.cap_usd + 1e-9:
        return BudgetExceeded(check.scope, check.cap_usd, committed, check.asked_usd)
    return None


def extend_breach(
    check: BudgetCheck, ledger_usd: float, live: Iterable[Instance], before: Instance, after: Instance, now: Timestamp
) -> BudgetExceeded | None:
    """The check of an extension: ``live`` holds the instance as it is (``before``); what the
    longer life adds to its projected cost (``after`` less ``before``) is what it asks."""
    assert check.project_live_s is not None, "an extension is checked in projection mode"
    added = projected_usd(after, now, check.project_live_s, check.expiry_late_s) - projected_usd(
        before, now, check.project_live_s, check.expiry_late_s
    )
    return budget_breach(dataclasses.replace(check, asked_usd=max(0.0, added)), ledger_usd, live, now)


def pending_usd(check: BudgetCheck, pending: Iterable[OnDemandRequest], offers: Sequence[Offer]) -> float:
    """What the approved on-demand requests not launched yet (``pending``) of ``check``'s scope
    are expected to cost: as the service quotes a request, its hours at the cheapest of
    ``offers`` that fits it (the dearest offer when none does)."""
    dearest = max((o.price_per_hour for o in offers), default=0.0)

    def usd(r: OnDemandRequest) -> float:
        fit = [o.price_per_hour for o in offers_for_request(offers, r) if o.gpu_count >= r.gpus]
        return r.hours * (min(fit) if fit else dearest)

    return sum(usd(r) for r in pending if in_scope(check, r.team))
