"""On-demand requests: quotas, launches, time limits. Pure: no clock, database or network.

Two entry points:

* :func:`check_quota` decides whether a request (or an extension) is within the requester's and
  the team's quota and the budget, and so may be approved without an admin. Every reason it
  refuses is returned, so the user and the admins see all of them at once.
* :func:`decide_requests` is the on-demand pass of ``policies.decide``. For each active request in
  the snapshot:

  - APPROVED / AUTO_APPROVED / PROVISIONING with no live instance: a ``Launch`` (purpose
    ON_DEMAND) on the best eligible offer, ranked by :func:`policies.selection.rank` so backed-off
    offers and disabled providers are skipped and failing over is the next offer in order. The
    request's cloud, region and spot choice narrow the offers first;
  - READY / EXPIRING past ``expires_at``: ``Terminate`` (reason "time limit");
  - READY within ``REMINDER_BEFORE_S`` of ``expires_at``: one ``Notify`` to the requester (the
    service then moves the request to EXPIRING, so the reminder goes out once);
  - a live ON_DEMAND instance whose request is no longer active (released, failed, expired):
    ``Terminate``. This is how ``release`` reaches the cloud: the bot only records it.

  It returns the actions and the earliest time at which the same snapshot would plan differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from burst.domain import (
    Action,
    Instance,
    InstanceState,
    Launch,
    Market,
    Notify,
    Offer,
    OnDemandRequest,
    Purpose,
    RequestState,
    Terminate,
    Timestamp,
    deterministic_id,
)
from policies.model import PolicyConfig, Snapshot
from policies.selection import Context, Need, rank

REMINDER_BEFORE_S = 30 * 60.0
LAUNCH_EXPIRY_MARGIN_S = 30 * 60.0  # the tag's expiry covers boot time; the request's limit starts at READY

ACTIVE_REQUEST_STATES: tuple[RequestState, ...] = (
    RequestState.APPROVED,
    RequestState.AUTO_APPROVED,
    RequestState.PROVISIONING,
    RequestState.READY,
    RequestState.EXPIRING,
)
"""Requests that hold, or are about to hold, GPUs. The controller's snapshot carries these."""

WANTS_INSTANCE = frozenset({RequestState.APPROVED, RequestState.AUTO_APPROVED, RequestState.PROVISIONING})
HAS_INSTANCE = frozenset({RequestState.READY, RequestState.EXPIRING})
_GONE = frozenset({InstanceState.TERMINATING, InstanceState.TERMINATED, InstanceState.LOST, InstanceState.LAUNCH_FAILED})


# --------------------------------------------------------------------------------------------
# Quotas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Limits that apply to one request. ``None`` means no limit."""

    user_max_gpus: int | None = None  # concurrent GPUs of the user's active requests
    user_gpu_hours_month: float | None = None
    team_max_gpus: int | None = None
    team_gpu_hours_month: float | None = None
    budget_month_usd: float | None = None  # the team's (or global) on-demand budget this month
    max_hours: float | None = None  # longest time limit without an admin


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """What is already used this month, and what the request would add."""

    user_gpu_hours_month: float = 0.0
    team_gpu_hours_month: float = 0.0
    spend_month_usd: float = 0.0
    request_usd: float = 0.0  # estimated cost of the request (or of the extension)


@dataclass(frozen=True, slots=True)
class QuotaVerdict:
    auto_approve: bool
    reasons: list[str] = field(default_factory=list)


def _active_gpus(reqs: Iterable[OnDemandRequest], skip: str, *, user: str | None = None, team: str | None = None) -> int:
    return sum(
        r.gpus
        for r in reqs
        if r.id != skip
        and r.state in ACTIVE_REQUEST_STATES
        and (user is None or r.user == user)
        and (team is None or r.team == team)
    )


def check_quota(
    request: OnDemandRequest,
    active_requests: Sequence[OnDemandRequest],
    usage: QuotaUsage,
    limits: QuotaLimits,
    *,
    extra_hours: float | None = None,
) -> QuotaVerdict:
    """Within quota? ``extra_hours`` checks an extension of an existing request instead of a new
    one: concurrent GPUs are already held, so only GPU-hours, money and the time limit count."""
    reasons: list[str] = []
    extending = extra_hours is not None
    hours = extra_hours if extra_hours is not None else request.hours
    gpu_hours = request.gpus * hours
    if not extending:
        if limits.user_max_gpus is not None:
            held = _active_gpus(active_requests, request.id, user=request.user)
            if held + request.gpus > limits.user_max_gpus:
                reasons.append(
                    f"{held + request.gpus} concurrent GPUs for you would exceed your limit of {limits.user_max_gpus}"
                    f" (you hold {held})"
                )
        if limits.team_max_gpus is not None:
            held = _active_gpus(active_requests, request.id, team=request.team)
            if held + request.gpus > limits.team_max_gpus:
                reasons.append(
                    f"{held + request.gpus} concurrent GPUs for team {request.team} would exceed its limit of "
                    f"{limits.team_max_gpus} (it holds {held})"
                )
    if limits.max_hours is not None:
        total = request.hours + (hours if extending else 0.0)
        if total > limits.max_hours + 1e-9:
            reasons.append(f"{_h(total)} exceeds the {_h(limits.max_hours)} time limit")
    if limits.user_gpu_hours_month is not None and usage.user_gpu_hours_month + gpu_hours > limits.user_gpu_hours_month + 1e-9:
        reasons.append(
            f"{gpu_hours:.1f} GPU-hours would take you to {usage.user_gpu_hours_month + gpu_hours:.1f} of your "
            f"{limits.user_gpu_hours_month:.0f} GPU-hours this month"
        )
    if limits.team_gpu_hours_month is not None and usage.team_gpu_hours_month + gpu_hours > limits.team_gpu_hours_month + 1e-9:
        reasons.append(
            f"{gpu_hours:.1f} GPU-hours would take team {request.team} to "
            f"{usage.team_gpu_hours_month + gpu_hours:.1f} of its {limits.team_gpu_hours_month:.0f} GPU-hours this month"
        )
    if limits.budget_month_usd is not None and usage.spend_month_usd + usage.request_usd > limits.budget_month_usd + 1e-9:
        reasons.append(
            f"about ${usage.request_usd:,.2f} would take spend to ${usage.spend_month_usd + usage.request_usd:,.2f} "
            f"of the ${limits.budget_month_usd:,.2f} budget this month"
        )
    return QuotaVerdict(not reasons, reasons)


def _h(hours: float) -> str:
    return f"{hours:g} h"


def gpu_hours_booked(
    requests: Iterable[OnDemandRequest],
    instances_by_id: dict[str, Instance],
    *,
    since: Timestamp,
    now: Timestamp,
    user: str | None = None,
    team: str | None = None,
) -> float:
    """GPU-hours a user's or team's requests created since ``since`` have used or booked.

    Active requests count their whole booking (they may use all of it). Finished ones count what
    their instance actually ran (launch to termination), or nothing when none was launched.
    """
    total = 0.0
    for r in requests:
        if r.created_at < since or (user is not None and r.user != user) or (team is not None and r.team != team):
            continue
        if r.state in ACTIVE_REQUEST_STATES:
            total += r.gpus * r.hours
            continue
        inst = instances_by_id.get(r.instance_id) if r.instance_id else None
        if inst is not None and inst.launched_at is not None:
            end = inst.terminated_at if inst.terminated_at is not None else now
            total += r.gpus * max(0.0, end - inst.launched_at) / 3600.0
    return total


# --------------------------------------------------------------------------------------------
# The on-demand pass of decide()
# --------------------------------------------------------------------------------------------


def offers_for_request(offers: Iterable[Offer], req: OnDemandRequest) -> list[Offer]:
    """The request's own narrowing: cloud, region, GPU model, market. Capacity fit is selection's."""
    want = Market.SPOT if req.spot else Market.ON_DEMAND
    model = req.gpu_model.lower()
    return [
        o
        for o in offers
        if o.market is want
        and (not req.cloud or o.cloud == req.cloud)
        and (not req.region or o.region == req.region)
        and (not model or o.gpu_model.lower() == model)
    ]


def best_offers(snap: Snapshot, req: OnDemandRequest, cfg: PolicyConfig) -> list[Offer]:
    ctx = Context(snap.now, snap.backoff_until, snap.disabled_providers, cfg.selection.prefer_spot_discount)
    need = Need(req.gpus, "", 0.0, 0, allow_spot=req.spot)
    return rank(offers_for_request(snap.offers, req), need, ctx)


def reminder_reason(request_id: str) -> str:
    """The reason of a reminder Notify; the service recognises it to move READY -> EXPIRING."""
    return f"on-demand reminder {request_id}"


def reminder_text(req: OnDemandRequest, now: Timestamp) -> str:
    left = max(0.0, (req.expires_at or now) - now)
    return (
        f"Your on-demand instance for request {req.id} ({req.gpus}x {req.gpu_model}) reaches its time limit "
        f"in {math.ceil(left / 60)} min and will then be terminated. Save your work, or run "
        f"`/burst extend {req.id} <duration>`."
    )


def decide_requests(snap: Snapshot, cfg: PolicyConfig) -> tuple[list[Action], float | None]:
    now = snap.now
    actions: list[Action] = []
    wake: float | None = None

    def at(t: float) -> None:
        nonlocal wake
        if wake is None or t < wake:
            wake = t

    active: dict[str, OnDemandRequest] = {r.id: r for r in snap.requests if r.state in ACTIVE_REQUEST_STATES}
    by_request: dict[str, list[Instance]] = {}
    if active:  # read only per active request: none, no pass over the instances for it
        for inst in snap.instances:
            if inst.request_id:
                by_request.setdefault(inst.request_id, []).append(inst)

    for req in sorted(active.values(), key=lambda r: (r.created_at, r.id)):
        live = [i for i in by_request.get(req.id, []) if i.state not in _GONE]
        if req.state in WANTS_INSTANCE:
            if live:
                continue  # launched, booting: the service moves the request along
            offers = best_offers(snap, req, cfg)
            if not offers:
                continue  # everything is backed off or disabled; retried when a backoff ends
            offer = offers[0]
            iid = deterministic_id(snap.cluster, "on-demand", req.id, repr(now), offer.key, prefix="od")
            actions.append(
                Launch(
                    intent_id=iid,
                    offer=offer,
                    purpose=Purpose.ON_DEMAND,
                    reason=(
                        f"on-demand request {req.id} of {req.user} ({req.gpus}x {req.gpu_model}, {req.hours:g} h) "
                        f"was {req.state}; {offer.instance_type} in {offer.cloud}/{offer.region}"
                        f"{'/' + offer.zone if offer.zone else ''} {offer.market} at ${offer.price_per_hour:.2f}/h "
                        f"is the cheapest eligible offer"
                    ),
                    owner=req.user,
                    team=req.team,
                    request_id=req.id,
                    expires_at=now + req.hours * 3600.0 + LAUNCH_EXPIRY_MARGIN_S,
                )
            )
            at(now + cfg.tick_interval_s)
            continue
        # READY / EXPIRING
        if req.expires_at is None:
            continue
        if now >= req.expires_at:
            for inst in live:
                actions.append(Terminate(inst.id, f"time limit: request {req.id} of {req.user} expired"))
            if live:
                at(now + cfg.tick_interval_s)
            continue
        remind_at = req.expires_at - REMINDER_BEFORE_S
        if req.state is RequestState.READY:
            if now >= remind_at:
                actions.append(Notify(req.user, reminder_text(req, now), reminder_reason(req.id)))
            else:
                at(remind_at)
        at(req.expires_at)

    # Instances whose request is over (released, failed, expired) or unknown: give them back.
    for inst in snap.instances:
        if inst.purpose is not Purpose.ON_DEMAND or inst.state in _GONE:
            continue
        if inst.request_id and inst.request_id in active:
            continue
        actions.append(Terminate(inst.id, f"request {inst.request_id or '-'} is no longer active (released or ended)"))
    return actions, wake
