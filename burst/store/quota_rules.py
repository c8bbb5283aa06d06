"""The per-user and per-team quota rule both stores apply under their lock (see
:class:`burst.ports.QuotaCheck`): pure, so SQL and memory give the same answer."""

from __future__ import annotations

from collections.abc import Iterable

from burst.domain import OnDemandRequest, RequestState
from burst.ports import QuotaCheck
from policies.requests import ACTIVE_REQUEST_STATES

HOLDING_STATES: tuple[RequestState, ...] = ACTIVE_REQUEST_STATES
"""Requests that hold GPUs, or are cleared to: what a quota counts."""


def ahead_of(req: OnDemandRequest, other: OnDemandRequest) -> bool:
    """Does ``other`` come before ``req`` when auto-approvals are re-checked? Everything already
    launched or approved by an admin does; auto-approved requests in creation order."""
    if other.id == req.id:
        return False
    if other.state is not RequestState.AUTO_APPROVED:
        return True
    return (other.created_at, other.id) < (req.created_at, req.id)


def quota_breaches(check: QuotaCheck, req: OnDemandRequest, holding: Iterable[OnDemandRequest]) -> list[str]:
    """Every limit of ``check`` that ``req`` on top of ``holding`` (requests in
    :data:`HOLDING_STATES`, ``req`` itself excluded) would break; empty: within quota."""
    user_gpus = team_gpus = 0
    user_gh = team_gh = 0.0
    for r in holding:
        if r.id == req.id or r.state not in HOLDING_STATES:
            continue
        recent = r.created_at >= check.period_start
        if r.user == req.user:
            user_gpus += r.gpus
            user_gh += r.gpus * r.hours if recent else 0.0
        if r.team == req.team:
            team_gpus += r.gpus
            team_gh += r.gpus * r.hours if recent else 0.0
    gh = req.gpus * req.hours
    out: list[str] = []
    if check.user_max_gpus is not None and user_gpus + req.gpus > check.user_max_gpus:
        out.append(f"{user_gpus + req.gpus} concurrent GPUs for {req.user} would exceed the limit of "
                   f"{check.user_max_gpus} (held: {user_gpus})")
    if check.team_max_gpus is not None and team_gpus + req.gpus > check.team_max_gpus:
        out.append(f"{team_gpus + req.gpus} concurrent GPUs for team {req.team} would exceed its limit of "
                   f"{check.team_max_gpus} (held: {team_gpus})")
    if check.user_gpu_hours is not None and user_gh + gh > check.user_gpu_hours + 1e-9:
        out.append(f"{gh:.1f} GPU-hours would exceed what is left of {req.user}'s GPU-hours this month")
    if check.team_gpu_hours is not None and team_gh + gh > check.team_gpu_hours + 1e-9:
        out.append(f"{gh:.1f} GPU-hours would exceed what is left of team {req.team}'s GPU-hours this month")
    return out


def lock_scopes(req: OnDemandRequest) -> tuple[str, str]:
    """The lock rows, always taken in this order (team, then user) so two writers cannot deadlock."""
    return (f"quota:team:{req.team}", f"quota:user:{req.user}")
