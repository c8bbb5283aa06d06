"""The on-demand request service: everything the Slack bot may do, over the store.

It validates input, checks quotas (:func:`policies.requests.check_quota`), records requests and
their state changes in the store, and reads status. It never calls a provider: an approved
request is picked up by the next controller tick (``policies.requests.decide_requests`` plans the
Launch), and a released one is terminated by that same pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from burst.budgets import BudgetBook, BudgetInputError, format_states
from burst.challenges import (
    Assessment,
    ChallengeDesk,
    ChallengeRequest,
    LiveQueue,
    cheapest_gpu_hour,
    queue_from_status,
)
from burst.domain import (
    ChallengeState,
    GrandChallenge,
    Instance,
    InstanceState,
    Market,
    Offer,
    OnDemandRequest,
    RequestState,
    Timestamp,
    day_start,
    month_start,
)
from burst.errors import BudgetExceeded, DuplicateRecord, InputError, StoreError
from burst.ondemand.errors import Denied, ServiceError
from burst.ondemand.messages import clean_text, fmt_hours, notify_quietly, slack_escape
from burst.ondemand.quota import quota_check
from burst.ondemand.settings import SETTINGS_USER, SSH_KEY_SETTING, OnDemandSettings
from burst.ondemand.sshkeys import validate_ssh_key
from burst.ports import Clock, Notifier, Store
from policies.grand_challenge import ChallengeSettings
from policies.requests import (
    ACTIVE_REQUEST_STATES,
    QuotaLimits,
    QuotaUsage,
    QuotaVerdict,
    check_quota,
    gpu_hours_booked,
    offers_for_request,
)

log = logging.getLogger("burst.ondemand")

REQUEST_ID = re.compile(r"^r-[0-9a-f]{6}$")


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
    replayed: bool = False  # the same signed request was seen before: nothing new was recorded

    @property
    def needs_approval(self) -> bool:
        return self.request.state is RequestState.REQUESTED



def _sentence(text: str) -> str:
    """One line, capitalised, ending with a full stop, Slack-escaped."""
    t = slack_escape(" ".join(text.split()))
    return (t[:1].upper() + t[1:]).rstrip(".") + "."


def _subject(target: str) -> str:
    """An id a user typed, fit for an audit row's subject (no control characters, bounded)."""
    return clean_text(target, 40)


def _same_request(a: OnDemandRequest, b: OnDemandRequest) -> bool:
    return (a.user, a.gpus, a.gpu_model, a.hours, a.cloud, a.region, a.spot, a.note) == (
        b.user, b.gpus, b.gpu_model, b.hours, b.cloud, b.region, b.spot, b.note)


@dataclass(frozen=True, slots=True)
class RequestDetail:
    """One request as its owner (or an admin) may see it, with its instance if it has one."""

    request: OnDemandRequest
    instance: Instance | None
    ssh_user: str


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What ``/burst status`` shows: the last tick's on-prem summary, the cloud fleet, spend
    against the budgets (0: none), and the next grand challenge."""

    last_tick: dict[str, object]
    live: tuple[Instance, ...]
    spend_day_usd: float
    spend_month_usd: float
    budget_day_usd: float
    budget_month_usd: float
    next_challenge: GrandChallenge | None
    budgets: tuple[str, ...] = ()  # one line per site/team budget (burst.budgets.BudgetState.line)
    budgets_blocked: tuple[str, ...] = ()  # the lines of those whose hard cap holds launches back


@dataclass(frozen=True, slots=True)
class TeamBudget:
    team: str
    spent_usd: float
    budget_month_usd: float | None  # None: no team budget
    gpu_hours: float  # on-demand GPU-hours booked this month
    gpu_hours_month: float | None  # None: no GPU-hour quota


@dataclass(frozen=True, slots=True)
class BudgetReport:
    """What ``/burst budget`` shows: spend this month, all teams and per team."""

    since: Timestamp
    total_usd: float
    budget_month_usd: float  # 0: none
    teams: tuple[TeamBudget, ...]
    budgets: tuple[str, ...] = ()  # one line per site/team budget (burst.budgets.BudgetState.line)


class OnDemandService:
    """Everything the bot may do. Thread-safe as far as the store is (the SQL store is).

    Reads return data (:class:`StatusReport`, :class:`BudgetReport`, :class:`RequestDetail`);
    ``bot/format.py`` renders them for Slack. Grand challenges: the ``gc_*`` methods, over
    ``self.challenges`` (:class:`burst.challenges.ChallengeDesk`, the path the CLI takes too),
    with the live queue the controller recorded on its last tick."""

    def __init__(
        self,
        store: Store,
        settings: OnDemandSettings,
        offers: Sequence[Offer],
        clock: Clock,
        *,
        notifier: Notifier | None = None,
        is_admin: Callable[[str], bool] | None = None,
        challenge_settings: ChallengeSettings | None = None,
        live_queue: Callable[[], LiveQueue | None] | None = None,
        budgets: BudgetBook | None = None,
    ) -> None:
        """``challenge_settings``: the config's ``grand_challenge:`` section (limits, offsets).
        ``live_queue``: where the impact's running jobs come from; default: the last tick.
        ``budgets``: the site and team budgets (``burst.wiring.budget_for``): past a soft level
        a new request needs an admin; status and budget show them."""
        self.store = store
        self.budgets = budgets
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
        # The clouds this cluster really has (the config's, through its offers): a request on any
        # other is refused by name, never queued for a cloud no controller can reach.
        self._clouds = tuple(c for c in settings.allowed_clouds if any(o.cloud == c for o in self.offers))
        self.clock = clock
        self.notifier = notifier
        self._is_admin = is_admin
        # The burst cost of --burst-preempted is priced on the controller's offers (all of them,
        # not only those allowed for on-demand requests): overflow is what would run them.
        self.challenges = ChallengeDesk(
            store, live_queue=live_queue or self.last_queue, settings=challenge_settings,
            price_per_gpu_hour=cheapest_gpu_hour(o for o in offers if o.market is Market.ON_DEMAND) or cheapest_gpu_hour(offers),
        )
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

    def require_admin(self, user: str, action: str, target: str = "") -> None:
        """Refuse a non-admin (audited: the denied row's subject names the ``target``, e.g. the
        request id, when there is one)."""
        if self.is_admin(user):
            return
        self.store.audit(
            at=self.clock.now(), actor=user, kind="admin", subject=_subject(target) or action, action="denied",
            reason=f"{action} needs an admin",
        )
        raise Denied(f"Only burst admins can {action}. This attempt was recorded.")

    @staticmethod
    def _unknown(rid: str) -> ServiceError:
        return ServiceError(f"No request `{slack_escape(rid[:20])}`.")

    def _get(self, rid: str) -> OnDemandRequest:
        req = self.store.get_request(rid) if REQUEST_ID.match(rid) else None
        if req is None:
            raise self._unknown(rid)
        return req

    def _own(self, user: str, rid: str, action: str = "act on") -> OnDemandRequest:
        """``rid`` if ``user`` may act on it. Someone else's request reads exactly like an unknown
        id (no oracle for which ids exist), and the attempt is audited with its target."""
        req = self._get(rid)
        if req.user != user and not self.is_admin(user):
            self.store.audit(
                at=self.clock.now(), actor=user, kind="request", subject=req.id, action="denied",
                reason=f"{action} another user's request",
            )
            raise self._unknown(rid)
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
        if args.cloud and args.cloud not in self._clouds:
            raise ServiceError(
                f"`{args.cloud}` is not configured on this cluster. Configured clouds: {', '.join(self._clouds) or 'none'}."
            )
        if args.region and args.region not in self._regions:
            raise ServiceError("Unknown or not allowed region.")
        return RequestArgs(args.gpus, model, hours, args.cloud, args.region, args.spot, clean_text(args.note))

    def request(self, user: str, args: RequestArgs, *, idempotency_key: str = "") -> RequestResult:
        """Record a request; auto-approved when within quota, decided atomically by the store
        (concurrent requests of one user cannot all be approved past the quota).

        ``idempotency_key`` (the bot passes a digest of the signed HTTP request): the request id
        is derived from it, so the same signed request replayed, even to another worker process,
        finds the request it made the first time and records nothing new (``replayed``)."""
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
        if self.budgets is not None:
            over = self.budgets.request_reasons(draft.team, estimate, now)
            if over:
                verdict = QuotaVerdict(False, [*verdict.reasons, *over])
        quota = None
        if verdict.auto_approve:
            # The budgets are checked again by the store under their locks, with the requests
            # approved but not launched yet on top: two requests that pass a soft level together
            # cannot both be auto-approved on what each read before the other was recorded.
            checks, words = self.budgets.request_checks(draft.team, estimate, now) if self.budgets else ((), ())
            quota = dataclasses.replace(
                quota_check(self.store, self.settings, draft, now), reason=f"within quota; about ${estimate:,.2f}",
                budgets=checks, budget_reasons=words, offers=self.offers,
            )
        keyed = f"r-{hashlib.sha256(idempotency_key.encode()).hexdigest()[:6]}" if idempotency_key else ""
        req = draft
        for attempt in range(8):
            rid = keyed if keyed and attempt == 0 else f"r-{secrets.token_hex(3)}"
            req = dataclasses.replace(draft, id=rid)
            try:
                req = self.store.add_request(req, now=now, actor=user, quota=quota)
                break
            except DuplicateRecord:
                seen = self.store.get_request(rid) if rid == keyed else None
                if seen is not None and _same_request(seen, draft):
                    log.info("request %s: replay of the same signed request; nothing recorded", rid)
                    return RequestResult(seen, verdict, estimate, offer, replayed=True)
                continue
        else:  # pragma: no cover - 8 collisions in 16M ids
            raise ServiceError("Could not allocate a request id; try again.")
        held = [r.reason for r in self.store.audit_rows(subject=req.id, kind="request", limit=10)
                if r.action == "needs-approval"] if verdict.auto_approve and req.state is RequestState.REQUESTED else []
        if held:
            verdict = QuotaVerdict(False, held[0].split("; "))
        elif verdict.auto_approve and req.state is RequestState.REQUESTED:
            # Within quota when read, but concurrent requests took it before the locked check.
            verdict = check_quota(
                req, self.store.requests(states=ACTIVE_REQUEST_STATES), self.usage_for(req, estimate, now),
                self.limits_for(user, req.team),
            )
            if verdict.auto_approve:
                verdict = QuotaVerdict(False, ["concurrent requests used the quota while this one was checked"])
        return RequestResult(req, verdict, estimate, offer)

    def approve(self, admin: str, rid: str) -> OnDemandRequest:
        """An admin approves a request above quota. Their own request is refused (and audited)
        unless ``slack.allow_self_approval`` is on: the quota is there for admins too."""
        self.require_admin(admin, "approve requests", rid)
        req = self._get(rid)
        if req.state is not RequestState.REQUESTED:
            raise ServiceError(f"Request `{req.id}` is already {req.state}.")
        now = self.clock.now()
        if req.user == admin and not self.settings.allow_self_approval:
            self.store.audit(
                at=now, actor=admin, kind="admin", subject=req.id, action="denied",
                reason="an admin approving their own request above quota (slack.allow_self_approval is off)",
            )
            raise Denied(
                f"Request `{req.id}` is your own and above quota: another admin must approve it. This attempt was recorded."
            )
        req = self.store.transition_request(
            req.id, RequestState.APPROVED, now=now, actor=admin, reason="approved by an admin", approver=admin
        )
        notify_quietly(self.notifier, req.user, f"Your request `{req.id}` was approved by <@{admin}>. burst is starting your instance.")
        return req

    def reject(self, admin: str, rid: str, reason: str = "") -> OnDemandRequest:
        self.require_admin(admin, "reject requests", rid)
        req = self._get(rid)
        if req.state is not RequestState.REQUESTED:
            raise ServiceError(f"Request `{req.id}` is already {req.state}.")
        why = clean_text(reason) or "rejected by an admin"
        req = self.store.transition_request(
            req.id, RequestState.REJECTED, now=self.clock.now(), actor=admin, reason=why, approver=admin
        )
        notify_quietly(self.notifier, req.user, f"Your request `{req.id}` was rejected by <@{admin}>: {slack_escape(why)}")
        return req

    def extend(self, user: str, rid: str, hours: float) -> OnDemandRequest:
        req = self._own(user, rid, "extend")
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
        admin = self.is_admin(user)
        if self.budgets is not None:
            # A longer limit raises what the instance is committed to cost: past a soft level,
            # only an admin may extend (their decision, audited as over quota); past a hard cap,
            # nobody may. With an instance, both are decided below under the budgets' locks (this
            # read only words an admin's extension); without one, nothing more is committed.
            over = self.budgets.request_reasons(req.team, usd, now)
            if over and req.instance_id:
                if admin:
                    verdict = QuotaVerdict(False, verdict.reasons)
            elif over:
                verdict = QuotaVerdict(False, [*verdict.reasons, *over])
        if not verdict.auto_approve and not admin:
            raise ServiceError(
                "Extension is over quota: " + "; ".join(verdict.reasons) + ". Ask an admin to extend it."
            )
        why = f"extended by {fmt_hours(hours)}" + ("" if verdict.auto_approve else " by an admin over quota")
        expires_at = req.expires_at + hours * 3600.0
        if req.instance_id:
            # The instance's longer life is what the budgets count: it is checked against every
            # hard cap (and, unless an admin extends, every soft level) and written in one
            # transaction with the budgets' rows locked, so concurrent extensions and launches
            # cannot pass a cap together. Running work is never stopped: a refusal keeps the
            # current limit.
            checks = self.budgets.extend_checks(req.team, now, soft=not admin) if self.budgets else ()
            try:
                self.store.extend_instance(req.instance_id, hours * 3600.0, now=now, actor=user, reason=why, budget=checks)
            except BudgetExceeded as e:
                assert self.budgets is not None
                hard, words = self.budgets.refusal(e)
                if hard:
                    raise ServiceError(f"Extension refused: {words}. Your instance keeps its current time limit; "
                                       "an admin can raise the cap (`/burst budget set`).") from None
                raise ServiceError(f"Extension is over quota: {words}. Ask an admin to extend it.") from None
            except (StoreError, ValueError):
                pass  # the instance is gone or ending: only the request's limit moves
        fields = {"expires_at": expires_at, "hours": req.hours + hours}
        if req.state is RequestState.READY:
            # The table has no READY -> READY edge: re-arm through EXPIRING, so the reminder goes
            # out again before the new limit.
            self.store.transition_request(req.id, RequestState.EXPIRING, now=now, actor=user, reason=f"{why}: re-arming the time limit")
        return self.store.transition_request(req.id, RequestState.READY, now=now, actor=user, reason=why, **fields)

    def release(self, user: str, rid: str) -> OnDemandRequest:
        req = self._own(user, rid, "release")
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


    def request_detail(self, user: str, rid: str) -> RequestDetail:
        r = self._own(user, rid, "show")
        inst = self.store.get_instance(r.instance_id) if r.instance_id else None
        return RequestDetail(r, inst, self.settings.ssh_user)

    def set_ssh_key(self, user: str, key: str) -> str:
        norm, fp = validate_ssh_key(key)
        self.store.set_user_setting(user, SSH_KEY_SETTING, norm, now=self.clock.now())
        return fp

    # ---- grand challenges ------------------------------------------------------------------
    def last_queue(self) -> LiveQueue | None:
        return queue_from_status(self.last_tick())

    def gc_assess(self, admin: str, req: ChallengeRequest) -> Assessment:
        """The admin check, then every problem with ``req`` and its impact (nothing stored)."""
        self.require_admin(admin, "schedule grand challenges")
        return self.challenges.assess(req, self.clock.now())

    def gc_schedule(self, admin: str, req: ChallengeRequest) -> GrandChallenge:
        self.require_admin(admin, "schedule grand challenges")
        try:
            return self.challenges.schedule(admin, req, self.clock.now())
        except InputError as e:
            raise ServiceError(_sentence(e.message)) from None

    def gc_list(self) -> list[GrandChallenge]:
        return self.challenges.listing()

    def gc_get(self, cid: str) -> GrandChallenge:
        try:
            return self.challenges.get(cid)
        except InputError:
            raise ServiceError(f"No grand challenge `{slack_escape(cid[:20])}`.") from None

    def gc_cancel(self, admin: str, cid: str, notifier: Notifier | None = None) -> GrandChallenge:
        """``notifier`` (default: the service's) announces a cancel after a notice went out."""
        self.require_admin(admin, "cancel grand challenges", cid)
        self.gc_get(cid)
        try:
            return self.challenges.cancel(admin, cid, self.clock.now(), notifier or self.notifier)
        except InputError as e:
            raise ServiceError(f"Grand challenge `{cid}`: {e.message}.") from None

    # ---- status ------------------------------------------------------------------------------
    def last_tick(self) -> dict[str, object]:
        return self.store.controller_status() or {}  # burst/daemon.py records it each tick

    def status(self) -> StatusReport:
        now = self.clock.now()
        live = [i for i in self.store.live_instances() if i.state is not InstanceState.TERMINATED]
        nxt = self.store.challenges(states=(ChallengeState.SCHEDULED, ChallengeState.NOTIFIED))
        states = self.budgets.states(now) if self.budgets is not None else []
        return StatusReport(
            last_tick=self.last_tick(),
            live=tuple(live),
            spend_day_usd=self.store.spend(since=day_start(now), now=now),
            spend_month_usd=self.store.spend(since=month_start(now), now=now),
            budget_day_usd=self.settings.budget_day_usd,
            budget_month_usd=self.settings.budget_month_usd,
            next_challenge=nxt[0] if nxt else None,
            budgets=tuple(st.line() for st in states),
            budgets_blocked=tuple(st.line() for st in states if st.blocked),
        )

    def budget(self) -> BudgetReport:
        now = self.clock.now()
        since = month_start(now)
        s = self.settings
        teams = sorted({s.default_team, *s.teams.values(), *s.team_quotas})
        total = self.store.spend(since=since, now=now)
        reqs = [r for r in self.store.requests() if r.created_at >= since]
        insts = {i.id: i for i in self.store.instances(since=since)}
        rows: list[TeamBudget] = []
        for team in teams:
            q = s.team_quotas.get(team, s.team_quota)
            spent = self.store.spend(since=since, now=now, team=team)
            gh = gpu_hours_booked(reqs, insts, since=since, now=now, team=team)
            rows.append(TeamBudget(team, spent, q.budget_month_usd, gh, q.gpu_hours_month))
        lines = tuple(format_states(self.budgets.states(now))) if self.budgets is not None else ()
        return BudgetReport(since, total, s.budget_month_usd, tuple(rows), lines)

    def budget_set(self, admin: str, name: str, level: str, amount: str) -> str:
        """``/burst budget set <budget> soft|hard <usd>``: admins only (a refusal is audited and
        changes nothing); bad input is a one-line ServiceError and changes nothing. Returns the
        budget's line as it now stands."""
        self.require_admin(admin, "set budgets", name)
        if self.budgets is None:
            raise ServiceError("Budgets are not available here.")
        now = self.clock.now()
        try:
            lim = self.budgets.set_limit(admin, name, level, amount, now=now)
        except BudgetInputError as e:
            raise ServiceError(slack_escape(str(e)) + ". Nothing was changed.") from None
        return next((st.line() for st in self.budgets.states(now, [lim])), lim.name)
