"""The quota the store enforces atomically (:class:`burst.ports.QuotaCheck`), built from the
``slack:`` settings; and the controller's check before it launches an on-demand request.

The service checks every limit for its reply (:func:`policies.requests.check_quota`), but two
requests checked at the same moment both see the same usage. So the auto-approval itself is
taken by the store under a lock (``Store.add_request(quota=...)``), and the controller re-checks
each auto-approved request under the same lock before it plans a launch
(:func:`hold_over_quota`): whatever slipped through (a quota lowered since, rows written by an
older bot) goes back to an admin instead of to a cloud.
"""

from __future__ import annotations

import logging

from burst.domain import OnDemandRequest, RequestState, Timestamp, month_start
from burst.errors import StoreError
from burst.ondemand.settings import OnDemandSettings
from burst.ports import QuotaCheck, Store
from policies.requests import ACTIVE_REQUEST_STATES, gpu_hours_booked

log = logging.getLogger("burst.ondemand")

ACTOR_QUOTA_GATE = "controller"


def quota_check(store: Store, settings: OnDemandSettings, req: OnDemandRequest, now: Timestamp) -> QuotaCheck:
    """The user's and team's limits for ``req``. The GPU-hour limits are handed to the store as
    what is left after the requests that already finished this month (active ones are counted
    by the store itself, under its lock)."""
    uq = settings.user_quotas.get(req.user, settings.user_quota)
    tq = settings.team_quotas.get(req.team, settings.team_quota)
    since = month_start(now)
    user_left = team_left = None
    if uq.gpu_hours_month is not None or tq.gpu_hours_month is not None:
        done = [r for r in store.requests() if r.created_at >= since and r.state not in ACTIVE_REQUEST_STATES
                and r.id != req.id]
        insts = {i.id: i for i in store.instances(since=since)}
        if uq.gpu_hours_month is not None:
            user_left = uq.gpu_hours_month - gpu_hours_booked(done, insts, since=since, now=now, user=req.user)
        if tq.gpu_hours_month is not None:
            team_left = tq.gpu_hours_month - gpu_hours_booked(done, insts, since=since, now=now, team=req.team)
    return QuotaCheck(
        user_max_gpus=uq.max_gpus, team_max_gpus=tq.max_gpus, user_gpu_hours=user_left, team_gpu_hours=team_left,
        period_start=since,
    )


def hold_over_quota(store: Store, settings: OnDemandSettings, now: Timestamp) -> list[OnDemandRequest]:
    """Before the controller plans launches: every AUTO_APPROVED request the quota no longer
    allows goes back to REQUESTED (audited, with the limits it breaks), oldest kept first.
    Returns the requests held back. A store error leaves the request as it is (logged), so the
    tick goes on; the next tick checks again."""
    held: list[OnDemandRequest] = []
    for req in store.requests(states=(RequestState.AUTO_APPROVED,)):
        try:
            got = store.recheck_request_quota(req.id, quota_check(store, settings, req, now), now=now,
                                              actor=ACTOR_QUOTA_GATE)
        except StoreError as e:
            log.warning("request %s: quota re-check failed: %s", req.id, e)
            continue
        if got.state is RequestState.REQUESTED:
            log.warning("request %s of %s held before launch: over quota; an admin must approve it", req.id, req.user)
            held.append(got)
    return held
