"""The controller's on-demand bookkeeping: :func:`reconcile_requests`.

The one call the controller makes after executing a plan. It moves requests along their
lifecycle from what the store now holds: approved -> provisioning (a launch intent exists),
provisioning -> ready (the instance runs; the requester gets a DM with how to reach it), ready ->
expiring (the reminder went out), expiring -> expired (terminated at the limit), and -> failed
(the instance was lost, or every launch attempt failed). The DM texts are here, in the core: the
controller sends them through the Notifier, and nothing in ``burst`` imports ``bot``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from burst.domain import Instance, InstanceState, Notify, OnDemandRequest, Plan, RequestState, Timestamp
from burst.errors import StoreError
from burst.ondemand.messages import fmt_time, notify_quietly
from burst.ondemand.settings import SETTINGS_USER, SSH_KEY_SETTING
from burst.ports import Notifier, Store
from policies.requests import ACTIVE_REQUEST_STATES, REMINDER_BEFORE_S, reminder_reason

log = logging.getLogger("burst.ondemand")

ACTOR_CONTROLLER = "controller"
MAX_LAUNCH_ATTEMPTS = 6


@dataclass
class RequestMoves:
    moved: list[tuple[str, str]] = field(default_factory=list)  # (request id, "from->to")
    errors: list[str] = field(default_factory=list)


def ready_text(req: OnDemandRequest, inst: Instance, ssh_user: str, has_key: bool) -> str:
    lines = [
        f"Your on-demand instance for request `{req.id}` is ready.",
        f"• instance: `{inst.id}` ({inst.instance_type}, {inst.gpus}x {inst.gpu_model})",
        f"• address: `{inst.address or 'pending'}`",
        f"• SSH: `ssh {ssh_user}@{inst.address or '<address>'}`",
        f"• region: {inst.cloud}/{inst.region}{' (spot)' if str(inst.market) == 'spot' else ''}",
        f"• price: ${inst.price_per_hour:.2f}/hour",
        f"• expires: {fmt_time(req.expires_at)} (extend with `/burst extend {req.id} <duration>`)",
    ]
    if not has_key:
        lines.append("You have no SSH key on file: set one with `/burst key set <public key>`.")
    return "\n".join(lines)


def reconcile_requests(
    store: Store,
    now: Timestamp,
    notifier: Notifier | None,
    live_instances: Iterable[Instance] | None = None,
    *,
    plan: Plan | None = None,
    ssh_user: str | None = None,
    reminder_before_s: float = REMINDER_BEFORE_S,
    max_attempts: int = MAX_LAUNCH_ATTEMPTS,
) -> RequestMoves:
    """Move active requests along from what the store holds after the tick's actions.

    ``live_instances``: the store's live instances *after* execution (read here when None).
    ``plan``: this tick's plan; a reminder Notify in it moves its request READY -> EXPIRING. With
    no plan, the time rule alone does (a reminder is due).
    """
    out = RequestMoves()
    active = store.requests(states=ACTIVE_REQUEST_STATES)
    if not active:
        return out
    if ssh_user is None:
        ssh_user = store.get_user_setting(SETTINGS_USER, "ssh_user") or "ubuntu"
    live = list(live_instances) if live_instances is not None else store.live_instances()
    by_req: dict[str, Instance] = {}
    for inst in sorted(live, key=lambda i: i.created_at):
        if inst.request_id and inst.state is not InstanceState.TERMINATED:
            by_req[inst.request_id] = inst
    reminded: set[str] | None = None
    if plan is not None:
        reminded = {
            a.reason.removeprefix(reminder_reason("")) for a in plan.actions
            if isinstance(a, Notify) and a.reason.startswith(reminder_reason(""))
        }
    for req in active:
        try:
            _reconcile_one(store, now, notifier, req, by_req.get(req.id), reminded, out, ssh_user, reminder_before_s, max_attempts)
        except Exception as e:  # noqa: BLE001 - one bad row must not stop the others or the tick
            log.warning("request %s: %s", req.id, e)
            out.errors.append(f"{req.id}: {type(e).__name__}: {e}")
    return out


def _reconcile_one(
    store: Store,
    now: Timestamp,
    notifier: Notifier | None,
    req: OnDemandRequest,
    inst: Instance | None,
    reminded: set[str] | None,
    out: RequestMoves,
    ssh_user: str,
    reminder_before_s: float,
    max_attempts: int,
) -> None:
    def move(to: RequestState, reason: str, **fields: object) -> OnDemandRequest:
        new = store.transition_request(req.id, to, now=now, actor=ACTOR_CONTROLLER, reason=reason, **fields)
        out.moved.append((req.id, f"{req.state}->{to}"))
        return new

    serving = inst is not None and inst.state not in (InstanceState.TERMINATING, InstanceState.LOST, InstanceState.LAUNCH_FAILED)
    if req.state in (RequestState.APPROVED, RequestState.AUTO_APPROVED):
        attempts = [inst] if inst is not None else _attempts(store, req)
        if not attempts:
            return
        first = attempts[-1]
        req = move(RequestState.PROVISIONING, f"launch intent {first.id} written", instance_id=first.id)
    if req.state is RequestState.PROVISIONING:
        if serving and inst is not None:
            if inst.state in (InstanceState.RUNNING, InstanceState.JOINED):
                limit = now + req.hours * 3600.0
                new = move(RequestState.READY, f"instance {inst.id} is running", instance_id=inst.id, expires_at=limit)
                try:
                    store.update_instance(inst.id, expires_at=limit)
                except StoreError:
                    pass
                has_key = bool(store.get_user_setting(req.user, SSH_KEY_SETTING))
                notify_quietly(notifier, req.user, ready_text(new, inst, ssh_user, has_key))
            return
        attempts = _attempts(store, req)
        launched = [i for i in attempts if i.cloud_id]
        if launched and all(i.state is InstanceState.TERMINATED for i in launched):
            move(RequestState.FAILED, "its instance was lost before it was ready")
            notify_quietly(notifier, req.user, f"Your request `{req.id}` failed: its instance was lost before it was ready. Please request again.")
        elif len(attempts) >= max_attempts and not launched:
            move(RequestState.FAILED, f"every offer failed ({len(attempts)} launch attempts)")
            notify_quietly(notifier, req.user, f"Your request `{req.id}` failed: no cloud had capacity after {len(attempts)} attempts. Please try again later or another GPU model.")
        return
    expires = req.expires_at
    if req.state is RequestState.READY:
        if not serving:
            if expires is not None and now >= expires:
                req = move(RequestState.EXPIRING, "time limit reached before the reminder")
            else:
                move(RequestState.FAILED, "the instance was lost (spot reclaim or outside delete)")
                notify_quietly(notifier, req.user, f"Your instance for request `{req.id}` was lost (spot reclaim or deleted outside burst).")
                return
        elif expires is not None and (req.id in reminded if reminded is not None else now >= expires - reminder_before_s):
            move(RequestState.EXPIRING, "the reminder went out before the time limit")
            return
        else:
            return
    if req.state is RequestState.EXPIRING and not serving:
        if expires is not None and now >= expires:
            move(RequestState.EXPIRED, "the time limit passed; the instance is terminated")
            notify_quietly(notifier, req.user, f"Your instance for request `{req.id}` reached its time limit and was terminated.")
        else:
            move(RequestState.FAILED, "the instance was lost during the final window")
            notify_quietly(notifier, req.user, f"Your instance for request `{req.id}` was lost (spot reclaim or deleted outside burst).")


def _attempts(store: Store, req: OnDemandRequest) -> list[Instance]:
    """Instances launched for ``req``, oldest first."""
    got = [i for i in store.instances(since=req.created_at) if i.request_id == req.id]
    got.sort(key=lambda i: i.created_at)
    return got

