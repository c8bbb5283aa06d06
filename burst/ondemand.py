"""On-demand GPU instances: the service the Slack bot talks to, and the controller's bookkeeping.

Two halves, one rule: **only the controller touches a cloud.**

* :class:`OnDemandService` is what the bot calls. It validates input, checks quotas
  (:func:`policies.requests.check_quota`), records requests and their state changes in the store,
  and reads status. It never calls a provider: an approved request is picked up by the next
  controller tick (``policies.requests.decide_requests`` plans the Launch), and a released one is
  terminated by that same pass.
* :func:`reconcile_requests` is the one call the controller makes after executing a plan. It moves
  requests along their lifecycle from what the store now holds: approved -> provisioning (a launch
  intent exists), provisioning -> ready (the instance runs; the requester gets a DM with how to
  reach it), ready -> expiring (the reminder went out), expiring -> expired (terminated at the
  limit), and -> failed (the instance was lost, or every launch attempt failed).

Texts returned or sent here never hold secrets, and everything a user typed is escaped for Slack
(:func:`slack_escape`) before it is shown, so ``<!channel>`` in a note cannot ping anyone.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import logging
import re
import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from burst.domain import (
    ChallengeState,
    GrandChallenge,
    Instance,
    InstanceState,
    Notify,
    Offer,
    OnDemandRequest,
    Plan,
    Purpose,
    RequestState,
    Timestamp,
)
from burst.errors import DuplicateRecord, StoreError
from burst.ports import Clock, Notifier, Store
from policies.requests import (
    ACTIVE_REQUEST_STATES,
    REMINDER_BEFORE_S,
    QuotaLimits,
    QuotaUsage,
    QuotaVerdict,
    check_quota,
    gpu_hours_booked,
    offers_for_request,
    reminder_reason,
)

log = logging.getLogger("burst.ondemand")

ACTOR_CONTROLLER = "controller"
SSH_KEY_SETTING = "ssh_public_key"
SETTINGS_USER = "_ondemand"  # the service publishes the SSH user here for the controller's DMs
MAX_LAUNCH_ATTEMPTS = 6
REQUEST_ID = re.compile(r"^r-[0-9a-f]{6}$")
CHALLENGE_ID = re.compile(r"^gc-[0-9a-f]{6}$")


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quota(_Strict):
    """Limits for one user or team. ``None``: no limit of that kind."""

    max_gpus: int | None = Field(default=None, ge=0)
    gpu_hours_month: float | None = Field(default=None, ge=0)
    budget_month_usd: float | None = Field(default=None, ge=0)  # teams only


class OnDemandSettings(_Strict):
    """The ``slack:`` section of the burst config (no secrets here: tokens come from the
    environment)."""

    admins: list[str] = Field(default_factory=list, description="Slack user ids of admins")
    admin_usergroup: str = Field(default="", description="Slack user group id whose members are admins")
    admin_channel: str = Field(default="", description="channel id for approvals and admin alerts")
    announce_channel: str = Field(default="", description="channel id for messages to everyone")
    teams: dict[str, str] = Field(default_factory=dict, description="user id -> team")
    default_team: str = "default"
    user_quota: Quota = Quota(max_gpus=8, gpu_hours_month=500)
    team_quota: Quota = Quota(max_gpus=32, gpu_hours_month=5000)
    user_quotas: dict[str, Quota] = Field(default_factory=dict)
    team_quotas: dict[str, Quota] = Field(default_factory=dict)
    budget_month_usd: float = Field(default=0.0, ge=0, description="on-demand budget, all teams; 0 = none")
    budget_day_usd: float = Field(default=0.0, ge=0, description="shown by status; 0 = none")
    default_hours: float = Field(default=4.0, gt=0)
    max_hours: float = Field(default=72.0, gt=0)
    max_gpus: int = Field(default=64, ge=1)
    allowed_clouds: list[str] = Field(default_factory=lambda: ["aws", "azure"])
    allowed_regions: list[str] = Field(default_factory=list, description="empty: any region with offers")
    allowed_gpu_models: list[str] = Field(default_factory=list, description="empty: any model with offers")
    ssh_user: str = "ubuntu"
    reminder_before_s: float = Field(default=REMINDER_BEFORE_S, gt=0)

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", v):
            raise ValueError("not a valid Unix user name")
        return v

    @field_validator("allowed_clouds")
    @classmethod
    def _clouds(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in ("aws", "azure")]
        if bad:
            raise ValueError(f"unknown clouds: {bad}")
        return v


# --------------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------------


class ServiceError(Exception):
    """A user-facing refusal. The message is safe to show in Slack as is."""


class Denied(ServiceError):
    """A non-admin tried an admin action (audited)."""


@dataclass(frozen=True, slots=True)
class RequestArgs:
    gpus: int
    gpu_model: str
    hours: float | None = None
    cloud: str = ""
    region: str = ""
    spot: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class RequestResult:
    request: OnDemandRequest
    verdict: QuotaVerdict
    estimate_usd: float
    offer: Offer

    @property
    def needs_approval(self) -> bool:
        return self.request.state is RequestState.REQUESTED


@dataclass(frozen=True, slots=True)
class Impact:
    """Who a grand challenge would preempt."""

    jobs: int
    users: tuple[str, ...] = ()
    source: str = ""


ImpactFn = Callable[[Timestamp, float], Impact]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control (&, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clean_text(text: str, limit: int = 200) -> str:
    """User free text (notes): control and bidi characters removed, whitespace folded, capped."""
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def fmt_time(t: Timestamp | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_hours(h: float) -> str:
    if h < 1:
        return f"{round(h * 60)} min"
    return f"{h:g} h"


def month_start(now: Timestamp) -> Timestamp:
    d = datetime.fromtimestamp(now, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


def day_start(now: Timestamp) -> Timestamp:
    d = datetime.fromtimestamp(now, UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def _notify(notifier: Notifier | None, audience: str, text: str) -> None:
    if notifier is None:
        return
    try:
        notifier.notify(audience, text)
    except Exception as e:  # noqa: BLE001 - notifications are best effort by contract
        log.warning("notify %s failed: %s", audience, type(e).__name__)


# --------------------------------------------------------------------------------------------
# SSH keys
# --------------------------------------------------------------------------------------------

_ECDSA = {"ecdsa-sha2-nistp256": b"nistp256", "ecdsa-sha2-nistp384": b"nistp384", "ecdsa-sha2-nistp521": b"nistp521"}
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", *_ECDSA)


def _read_string(blob: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(blob):
        raise ValueError("truncated")
    (n,) = struct.unpack(">I", blob[pos : pos + 4])
    pos += 4
    if n > len(blob) - pos:
        raise ValueError("truncated")
    return blob[pos : pos + n], pos + n


def validate_ssh_key(text: str) -> tuple[str, str]:
    """Return ``(normalised key, SHA256 fingerprint)`` or raise :class:`ServiceError`.

    Accepted: ``ssh-ed25519``, ``ecdsa-sha2-nistp256/384/521`` and ``ssh-rsa`` of at least 2048
    bits. The base64 body must decode, and the blob inside must start with the same key type.
    The comment is dropped (it is free text and not needed to log in).
    """
    parts = text.strip().split()
    if len(text) > 16384 or len(parts) < 2:
        raise ServiceError("That is not an SSH public key. Paste the one line from your `~/.ssh/id_ed25519.pub`.")
    kind, body = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise ServiceError(f"Key type must be one of {', '.join(KEY_TYPES)}.")
    try:
        blob = base64.b64decode(body, validate=True)
        inner, pos = _read_string(blob, 0)
        if inner.decode("ascii", "replace") != kind:
            raise ValueError("key type inside the key does not match")
        if kind == "ssh-ed25519":
            pub, pos = _read_string(blob, pos)
            if len(pub) != 32:
                raise ValueError("bad ed25519 key")
        elif kind == "ssh-rsa":
            e, pos = _read_string(blob, pos)
            n, pos = _read_string(blob, pos)
            bits = int.from_bytes(n, "big").bit_length()
            if not e or bits < 2048:
                raise ServiceError(f"RSA keys must have at least 2048 bits (this one has {bits}).")
        else:
            curve, pos = _read_string(blob, pos)
            if curve != _ECDSA[kind]:
                raise ValueError("curve does not match the key type")
            point, pos = _read_string(blob, pos)
            if not point:
                raise ValueError("empty point")
        if pos != len(blob):
            raise ValueError("trailing bytes")
    except ServiceError:
        raise
    except (ValueError, binascii.Error, struct.error):
        raise ServiceError("That SSH public key does not decode. Paste the whole line, unchanged.") from None
    fp = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"{kind} {body}", fp


def ondemand_user_data(key: str | None, ssh_user: str) -> str:
    """Boot script for an on-demand instance: install the requester's key. Never joins the
    scheduler. ``key`` was validated by :func:`validate_ssh_key` (base64 and a fixed type only),
    so it is inert inside single quotes."""
    lines = ["#!/bin/bash", "set -eu", f"u={ssh_user}", 'id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"']
    if key:
        kind, body = validate_ssh_key(key)[0].split()
        lines += [
            'h=$(getent passwd "$u" | cut -d: -f6)',
            'install -d -m 700 -o "$u" -g "$u" "$h/.ssh"',
            f"echo '{kind} {body}' >> \"$h/.ssh/authorized_keys\"",
            'chown "$u:$u" "$h/.ssh/authorized_keys"; chmod 600 "$h/.ssh/authorized_keys"',
        ]
    return "\n".join(lines) + "\n"


def make_user_data_for(
    store: Store, ssh_user: str, fallback: Callable[[Instance], str] | None = None
) -> Callable[[Instance], str]:
    """A ``user_data_for`` for the Controller: on-demand instances get :func:`ondemand_user_data`
    with the owner's stored key; every other instance gets ``fallback`` (or the provider's
    template when that is None). Built from the stored instance, so a retried launch (after a
    crash or a transient error) boots exactly as its first try would have."""

    def user_data_for(inst: Instance) -> str:
        if inst.purpose is Purpose.ON_DEMAND:
            key = store.get_user_setting(inst.owner, SSH_KEY_SETTING) if inst.owner else None
            try:
                return ondemand_user_data(key, ssh_user)
            except ServiceError:
                return ondemand_user_data(None, ssh_user)
        return fallback(inst) if fallback is not None else ""

    return user_data_for


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


def describe_request(r: OnDemandRequest) -> str:
    where = "/".join(x for x in (r.cloud, r.region) if x) or "any cloud"
    bits = [
        f"`{r.id}` {r.gpus}x {slack_escape(r.gpu_model)} for {fmt_hours(r.hours)} on {slack_escape(where)}"
        f"{' (spot)' if r.spot else ''}: *{r.state}*"
    ]
    if r.expires_at is not None and r.state in (RequestState.READY, RequestState.EXPIRING):
        bits.append(f"until {fmt_time(r.expires_at)}")
    return " ".join(bits)


class OnDemandService:
    """Everything the bot may do. Thread-safe as far as the store is (the SQL store is)."""

    def __init__(
        self,
        store: Store,
        settings: OnDemandSettings,
        offers: Sequence[Offer],
        clock: Clock,
        *,
        notifier: Notifier | None = None,
        is_admin: Callable[[str], bool] | None = None,
        impact: ImpactFn | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.offers = tuple(
            o
            for o in offers
            if o.cloud in settings.allowed_clouds
            and (not settings.allowed_regions or o.region in settings.allowed_regions)
            and (not settings.allowed_gpu_models or o.gpu_model.lower() in {m.lower() for m in settings.allowed_gpu_models})
        )
        self._models = {o.gpu_model.lower(): o.gpu_model for o in self.offers}
        self._regions = {o.region for o in self.offers}
        self.clock = clock
        self.notifier = notifier
        self._is_admin = is_admin
        self.impact_fn = impact
        try:
            store.set_user_setting(SETTINGS_USER, "ssh_user", settings.ssh_user, now=clock.now())
        except StoreError as e:  # the controller falls back to "ubuntu" in its DMs
            log.warning("cannot publish the SSH user: %s", e)

    # ---- identity -----------------------------------------------------------------------------
    def use_admin_check(self, is_admin: Callable[[str], bool]) -> None:
        """Who else is an admin besides ``settings.admins`` (the bot passes its user-group lookup)."""
        self._is_admin = is_admin

    def team_of(self, user: str) -> str:
        return self.settings.teams.get(user, self.settings.default_team)

    def is_admin(self, user: str) -> bool:
        if user in self.settings.admins:
            return True
        return bool(self._is_admin and self._is_admin(user))

    def require_admin(self, user: str, action: str) -> None:
        if self.is_admin(user):
            return
        self.store.audit(
            at=self.clock.now(), actor=user, kind="admin", subject=action, action="denied",
            reason=f"{action} needs an admin",
        )
        raise Denied(f"Only burst admins can {action}. This attempt was recorded.")

    def _get(self, rid: str) -> OnDemandRequest:
        req = self.store.get_request(rid) if REQUEST_ID.match(rid) else None
        if req is None:
            raise ServiceError(f"No request `{slack_escape(rid[:20])}`.")
        return req

    def _own(self, user: str, rid: str) -> OnDemandRequest:
        req = self._get(rid)
        if req.user != user and not self.is_admin(user):
            raise ServiceError(f"Request `{req.id}` is not yours.")
        return req

    # ---- quota ------------------------------------------------------------------------------
    def limits_for(self, user: str, team: str) -> QuotaLimits:
        s = self.settings
        uq = s.user_quotas.get(user, s.user_quota)
        tq = s.team_quotas.get(team, s.team_quota)
        budget = tq.budget_month_usd if tq.budget_month_usd is not None else (s.budget_month_usd or None)
        return QuotaLimits(
            user_max_gpus=uq.max_gpus,
            user_gpu_hours_month=uq.gpu_hours_month,
            team_max_gpus=tq.max_gpus,
            team_gpu_hours_month=tq.gpu_hours_month,
            budget_month_usd=budget,
            max_hours=s.max_hours,
        )

    def usage_for(self, req: OnDemandRequest, request_usd: float, now: Timestamp) -> QuotaUsage:
        since = month_start(now)
        reqs = [r for r in self.store.requests() if r.created_at >= since and r.id != req.id]
        insts = {i.id: i for i in self.store.instances(since=since)}
        team_budgeted = self.settings.team_quotas.get(req.team, self.settings.team_quota).budget_month_usd is not None
        return QuotaUsage(
            user_gpu_hours_month=gpu_hours_booked(reqs, insts, since=since, now=now, user=req.user),
            team_gpu_hours_month=gpu_hours_booked(reqs, insts, since=since, now=now, team=req.team),
            spend_month_usd=self.store.spend(since=since, now=now, team=req.team if team_budgeted else None),
            request_usd=request_usd,
        )

    def quote(self, req: OnDemandRequest) -> Offer | None:
        fit = [o for o in offers_for_request(self.offers, req) if o.gpu_count >= req.gpus]
        return min(fit, key=lambda o: (o.price_per_hour, o.key)) if fit else None

    # ---- requests -----------------------------------------------------------------------------
    def _normalise(self, args: RequestArgs) -> RequestArgs:
        s = self.settings
        if not 1 <= args.gpus <= s.max_gpus:
            raise ServiceError(f"GPU count must be between 1 and {s.max_gpus}.")
        model = self._models.get(args.gpu_model.lower())
        if model is None:
            known = ", ".join(sorted(self._models.values())) or "none"
            raise ServiceError(f"Unknown or not allowed GPU model. Allowed: {known}.")
        hours = s.default_hours if args.hours is None else args.hours
        if not 0 < hours <= s.max_hours:
            raise ServiceError(f"Duration must be more than 0 and at most {fmt_hours(s.max_hours)}.")
        if args.cloud and args.cloud not in s.allowed_clouds:
            raise ServiceError(f"Cloud must be one of: {', '.join(s.allowed_clouds)}.")
        if args.region and args.region not in self._regions:
            raise ServiceError("Unknown or not allowed region.")
        return RequestArgs(args.gpus, model, hours, args.cloud, args.region, args.spot, clean_text(args.note))

    def request(self, user: str, args: RequestArgs) -> RequestResult:
        a = self._normalise(args)
        now = self.clock.now()
        assert a.hours is not None
        draft = OnDemandRequest(
            id="r-000000", user=user, team=self.team_of(user), gpus=a.gpus, gpu_model=a.gpu_model,
            hours=a.hours, cloud=a.cloud, region=a.region, spot=a.spot, note=a.note, created_at=now,
        )
        offer = self.quote(draft)
        if offer is None:
            where = "/".join(x for x in (a.cloud, a.region) if x) or "any allowed cloud"
            raise ServiceError(
                f"No {'spot ' if a.spot else ''}offer has {a.gpus}x {a.gpu_model} on {slack_escape(where)}. "
                "Try fewer GPUs, another region or cloud."
            )
        estimate = offer.price_per_hour * a.hours
        verdict = check_quota(
            draft,
            self.store.requests(user=None, states=ACTIVE_REQUEST_STATES),
            self.usage_for(draft, estimate, now),
            self.limits_for(user, draft.team),
        )
        req = draft
        for _ in range(8):
            req = dataclasses.replace(draft, id=f"r-{secrets.token_hex(3)}")
            try:
                self.store.add_request(req, now=now, actor=user)
                break
            except DuplicateRecord:
                continue
        else:  # pragma: no cover - 8 collisions in 16M ids
            raise ServiceError("Could not allocate a request id; try again.")
        if verdict.auto_approve:
            req = self.store.transition_request(
                req.id, RequestState.AUTO_APPROVED, now=now, actor="quota",
                reason=f"within quota; about ${estimate:,.2f}",
            )
        return RequestResult(req, verdict, estimate, offer)

    def approve(self, admin: str, rid: str) -> OnDemandRequest:
        self.require_admin(admin, "approve requests")
        req = self._get(rid)
        if req.state is not RequestState.REQUESTED:
            raise ServiceError(f"Request `{req.id}` is already {req.state}.")
        now = self.clock.now()
        req = self.store.transition_request(
            req.id, RequestState.APPROVED, now=now, actor=admin, reason="approved by an admin", approver=admin
        )
        _notify(self.notifier, req.user, f"Your request `{req.id}` was approved by <@{admin}>. burst is starting your instance.")
        return req

    def reject(self, admin: str, rid: str, reason: str = "") -> OnDemandRequest:
        self.require_admin(admin, "reject requests")
        req = self._get(rid)
        if req.state is not RequestState.REQUESTED:
            raise ServiceError(f"Request `{req.id}` is already {req.state}.")
        why = clean_text(reason) or "rejected by an admin"
        req = self.store.transition_request(
            req.id, RequestState.REJECTED, now=self.clock.now(), actor=admin, reason=why, approver=admin
        )
        _notify(self.notifier, req.user, f"Your request `{req.id}` was rejected by <@{admin}>: {slack_escape(why)}")
        return req

    def extend(self, user: str, rid: str, hours: float) -> OnDemandRequest:
        req = self._own(user, rid)
        if req.state not in (RequestState.READY, RequestState.EXPIRING) or req.expires_at is None:
            raise ServiceError(f"Request `{req.id}` is {req.state}; only a ready instance can be extended.")
        if not 0 < hours <= self.settings.max_hours:
            raise ServiceError(f"Extension must be more than 0 and at most {fmt_hours(self.settings.max_hours)}.")
        now = self.clock.now()
        if now >= req.expires_at:
            raise ServiceError(f"Request `{req.id}` has reached its time limit.")
        offer = self.quote(req)
        usd = (offer.price_per_hour if offer else 0.0) * hours
        verdict = check_quota(
            req, self.store.requests(states=ACTIVE_REQUEST_STATES), self.usage_for(req, usd, now),
            self.limits_for(req.user, req.team), extra_hours=hours,
        )
        if not verdict.auto_approve and not self.is_admin(user):
            raise ServiceError(
                "Extension is over quota: " + "; ".join(verdict.reasons) + ". Ask an admin to extend it."
            )
        fields = {"expires_at": req.expires_at + hours * 3600.0, "hours": req.hours + hours}
        why = f"extended by {fmt_hours(hours)}" + ("" if verdict.auto_approve else " by an admin over quota")
        if req.state is RequestState.READY:
            # The table has no READY -> READY edge: re-arm through EXPIRING, so the reminder goes
            # out again before the new limit.
            self.store.transition_request(req.id, RequestState.EXPIRING, now=now, actor=user, reason=f"{why}: re-arming the time limit")
        req = self.store.transition_request(req.id, RequestState.READY, now=now, actor=user, reason=why, **fields)
        inst_id = req.instance_id
        if inst_id:
            try:
                self.store.update_instance(inst_id, expires_at=req.expires_at)
            except StoreError:
                pass
        return req

    def release(self, user: str, rid: str) -> OnDemandRequest:
        req = self._own(user, rid)
        if req.state not in (
            RequestState.REQUESTED, RequestState.APPROVED, RequestState.AUTO_APPROVED,
            RequestState.PROVISIONING, RequestState.READY, RequestState.EXPIRING,
        ):
            raise ServiceError(f"Request `{req.id}` is already {req.state}.")
        return self.store.transition_request(
            req.id, RequestState.RELEASED, now=self.clock.now(), actor=user,
            reason="released by its requester" if user == req.user else "released by an admin",
        )

    def list_requests(self, user: str, *, all_users: bool = False) -> list[OnDemandRequest]:
        if all_users and self.is_admin(user):
            return self.store.requests(states=(RequestState.REQUESTED, *ACTIVE_REQUEST_STATES))
        mine = self.store.requests(user=user)
        return mine[-20:]

    def show(self, user: str, rid: str) -> str:
        r = self._own(user, rid)
        lines = [
            describe_request(r),
            f"requested by <@{r.user}> (team {slack_escape(r.team)}) at {fmt_time(r.created_at)}",
        ]
        if r.approver:
            lines.append(f"decided by <@{r.approver}>")
        if r.note:
            lines.append(f"note: {slack_escape(r.note)}")
        inst = self.store.get_instance(r.instance_id) if r.instance_id else None
        if inst is not None:
            lines.append(self._instance_line(inst))
        return "\n".join(lines)

    def _instance_line(self, inst: Instance) -> str:
        return (
            f"instance `{inst.id}` ({inst.instance_type}, {inst.cloud}/{inst.region}, {inst.state})"
            f"{', address ' + inst.address if inst.address else ''}, ${inst.price_per_hour:.2f}/h, "
            f"ssh user `{self.settings.ssh_user}`"
        )

    def set_ssh_key(self, user: str, key: str) -> str:
        norm, fp = validate_ssh_key(key)
        self.store.set_user_setting(user, SSH_KEY_SETTING, norm, now=self.clock.now())
        return fp

    # ---- status ------------------------------------------------------------------------------
    def last_tick(self) -> dict[str, object]:
        return self.store.controller_status() or {}  # burst/daemon.py records it each tick

    def status(self) -> str:
        now = self.clock.now()
        lines: list[str] = []
        t = self.last_tick()
        if t:
            used, total = t.get("onprem_gpus_used"), t.get("onprem_gpus")
            wait = t.get("longest_wait_s")
            wait_min = f"{float(wait) / 60:.0f} min" if isinstance(wait, int | float) else "-"
            at = t.get("at")
            lines.append(
                f"*On-prem:* {used if used is not None else '-'}/{total if total is not None else '-'} GPUs used, "
                f"{t.get('pending', '-')} pending jobs, longest wait {wait_min}"
                f" (controller tick at {fmt_time(float(at)) if isinstance(at, int | float) else '-'})"
            )
        else:
            lines.append("*On-prem:* no controller tick recorded yet")
        live = [i for i in self.store.live_instances() if i.state is not InstanceState.TERMINATED]
        if live:
            groups: dict[tuple[str, str, str], list[Instance]] = {}
            for i in live:
                groups.setdefault((str(i.purpose), i.cloud, i.region), []).append(i)
            parts = [
                f"{p} {c}/{r}: {len(v)} ({sum(i.gpus for i in v)} GPUs)" for (p, c, r), v in sorted(groups.items())
            ]
            lines.append(f"*Cloud fleet:* {len(live)} instances, {sum(i.gpus for i in live)} GPUs; " + "; ".join(parts))
        else:
            lines.append("*Cloud fleet:* none")
        s = self.settings
        day = self.store.spend(since=day_start(now), now=now)
        month = self.store.spend(since=month_start(now), now=now)
        lines.append(
            f"*Spend:* today ${day:,.2f}{f' of ${s.budget_day_usd:,.2f}' if s.budget_day_usd else ''}, "
            f"this month ${month:,.2f}{f' of ${s.budget_month_usd:,.2f}' if s.budget_month_usd else ''}"
        )
        nxt = self.store.challenges(states=(ChallengeState.SCHEDULED, ChallengeState.NOTIFIED))
        if nxt:
            gc = nxt[0]
            lines.append(
                f"*Next grand challenge:* `{gc.id}` {slack_escape(gc.name)} at {fmt_time(gc.start_at)} "
                f"for {fmt_hours(gc.duration_s / 3600)}"
            )
        else:
            lines.append("*Next grand challenge:* none scheduled")
        return "\n".join(lines)

    def budget(self) -> str:
        now = self.clock.now()
        since = month_start(now)
        s = self.settings
        teams = sorted({s.default_team, *s.teams.values(), *s.team_quotas})
        lines = [f"*Budget this month* (since {fmt_time(since)}):"]
        total = self.store.spend(since=since, now=now)
        lines.append(f"all teams: ${total:,.2f}" + (f" of ${s.budget_month_usd:,.2f}" if s.budget_month_usd else ""))
        reqs = [r for r in self.store.requests() if r.created_at >= since]
        insts = {i.id: i for i in self.store.instances(since=since)}
        for team in teams:
            q = s.team_quotas.get(team, s.team_quota)
            spent = self.store.spend(since=since, now=now, team=team)
            gh = gpu_hours_booked(reqs, insts, since=since, now=now, team=team)
            lines.append(
                f"{slack_escape(team)}: ${spent:,.2f}"
                + (f" of ${q.budget_month_usd:,.2f}" if q.budget_month_usd is not None else "")
                + f", on-demand {gh:.1f}"
                + (f" of {q.gpu_hours_month:.0f}" if q.gpu_hours_month is not None else "")
                + " GPU-hours"
            )
        return "\n".join(lines)

    # ---- grand challenges -----------------------------------------------------------------
    def impact(self, start_at: Timestamp, duration_s: float) -> Impact:
        if self.impact_fn is not None:
            return self.impact_fn(start_at, duration_s)
        t = self.last_tick()
        running = t.get("running")
        at = t.get("at")
        users_raw = t.get("running_users")
        users = tuple(u for u in users_raw if isinstance(u, str)) if isinstance(users_raw, list) else ()
        if isinstance(running, int):
            return Impact(running, users, f"controller tick at {fmt_time(float(at)) if isinstance(at, int | float) else '-'}")
        return Impact(0, (), "no controller tick recorded yet")

    def gc_schedule(
        self, admin: str, start_at: Timestamp, duration_s: float, job: str, note: str = ""
    ) -> GrandChallenge:
        self.require_admin(admin, "schedule grand challenges")
        now = self.clock.now()
        if start_at <= now:
            raise ServiceError("The start time is in the past.")
        if not 0 < duration_s <= 14 * 86400:
            raise ServiceError("Duration must be more than 0 and at most 14 days.")
        for gc in self.store.challenges(
            states=(ChallengeState.SCHEDULED, ChallengeState.NOTIFIED, ChallengeState.DRAINING,
                    ChallengeState.PREEMPTED, ChallengeState.RUNNING)
        ):
            if start_at < gc.start_at + gc.duration_s and gc.start_at < start_at + duration_s:
                raise ServiceError(f"It overlaps grand challenge `{gc.id}` ({fmt_time(gc.start_at)}).")
        for _ in range(8):
            gc = GrandChallenge(
                id=f"gc-{secrets.token_hex(3)}", name=job, start_at=start_at, duration_s=duration_s,
                command=job, created_by=admin, note=clean_text(note),
            )
            try:
                return self.store.add_challenge(gc, now=now, actor=admin)
            except DuplicateRecord:
                continue
        raise ServiceError("Could not allocate a challenge id; try again.")  # pragma: no cover

    def gc_list(self) -> list[GrandChallenge]:
        return self.store.challenges(
            states=(ChallengeState.SCHEDULED, ChallengeState.NOTIFIED, ChallengeState.DRAINING,
                    ChallengeState.PREEMPTED, ChallengeState.RUNNING, ChallengeState.RESTORING)
        )

    def gc_get(self, cid: str) -> GrandChallenge:
        gc = self.store.get_challenge(cid) if CHALLENGE_ID.match(cid) else None
        if gc is None:
            raise ServiceError(f"No grand challenge `{slack_escape(cid[:20])}`.")
        return gc

    def gc_cancel(self, admin: str, cid: str) -> GrandChallenge:
        self.require_admin(admin, "cancel grand challenges")
        gc = self.gc_get(cid)
        if gc.state not in (ChallengeState.SCHEDULED, ChallengeState.NOTIFIED):
            raise ServiceError(f"Grand challenge `{gc.id}` is {gc.state}; only a scheduled one can be cancelled here.")
        return self.store.transition_challenge(
            gc.id, ChallengeState.CANCELLED, now=self.clock.now(), actor=admin, reason="cancelled by an admin"
        )


def describe_challenge(gc: GrandChallenge) -> str:
    return (
        f"`{gc.id}` {slack_escape(gc.name)} at {fmt_time(gc.start_at)} for {fmt_hours(gc.duration_s / 3600)}: "
        f"*{gc.state}* (by <@{gc.created_by}>){' — ' + slack_escape(gc.note) if gc.note else ''}"
    )


# --------------------------------------------------------------------------------------------
# The controller's bookkeeping
# --------------------------------------------------------------------------------------------


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
                _notify(notifier, req.user, ready_text(new, inst, ssh_user, has_key))
            return
        attempts = _attempts(store, req)
        launched = [i for i in attempts if i.cloud_id]
        if launched and all(i.state is InstanceState.TERMINATED for i in launched):
            move(RequestState.FAILED, "its instance was lost before it was ready")
            _notify(notifier, req.user, f"Your request `{req.id}` failed: its instance was lost before it was ready. Please request again.")
        elif len(attempts) >= max_attempts and not launched:
            move(RequestState.FAILED, f"every offer failed ({len(attempts)} launch attempts)")
            _notify(notifier, req.user, f"Your request `{req.id}` failed: no cloud had capacity after {len(attempts)} attempts. Please try again later or another GPU model.")
        return
    expires = req.expires_at
    if req.state is RequestState.READY:
        if not serving:
            if expires is not None and now >= expires:
                req = move(RequestState.EXPIRING, "time limit reached before the reminder")
            else:
                move(RequestState.FAILED, "the instance was lost (spot reclaim or outside delete)")
                _notify(notifier, req.user, f"Your instance for request `{req.id}` was lost (spot reclaim or deleted outside burst).")
                return
        elif expires is not None and (req.id in reminded if reminded is not None else now >= expires - reminder_before_s):
            move(RequestState.EXPIRING, "the reminder went out before the time limit")
            return
        else:
            return
    if req.state is RequestState.EXPIRING and not serving:
        if expires is not None and now >= expires:
            move(RequestState.EXPIRED, "the time limit passed; the instance is terminated")
            _notify(notifier, req.user, f"Your instance for request `{req.id}` reached its time limit and was terminated.")
        else:
            move(RequestState.FAILED, "the instance was lost during the final window")
            _notify(notifier, req.user, f"Your instance for request `{req.id}` was lost (spot reclaim or deleted outside burst).")


def _attempts(store: Store, req: OnDemandRequest) -> list[Instance]:
    """Instances launched for ``req``, oldest first."""
    got = [i for i in store.instances(since=req.created_at) if i.request_id == req.id]
    got.sort(key=lambda i: i.created_at)
    return got

