"""In-memory the :class:`burst.ports.Store`, for the simulator and unit tests.

Same contract as the SQL store (one contract suite runs against both). Written by hand because
it *is* the fake: plain dicts, no transactions needed in a single thread. It is not thread-safe
and keeps nothing across processes.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from burst.domain import (
    ChallengeState,
    GrandChallenge,
    Instance,
    InstanceState,
    OnDemandRequest,
    RequestState,
    Timestamp,
    check_challenge_transition,
    check_instance_transition,
    check_request_transition,
)
from burst.errors import DuplicateRecord, LeaseLost, RecordNotFound
from burst.ports import AuditRow, Backoff, BudgetArg, BudgetCheck, Lease, MirrorRecord, QuotaCheck, SpendEntry
from burst.store.challenge_rules import check_challenge_fields, released, restored
from burst.store.ledger import (
    BILLING_MINIMUM_S,
    PENDING_STATES,
    budget_breach,
    checks_of,
    extend_breach,
    in_scope,
    ledger_entry,
    pending_usd,
)
from burst.store.quota_rules import ahead_of, quota_breaches


class MemoryStore:
    def __init__(self, *, audit_limit: int | None = None) -> None:
        self._instances: dict[str, Instance] = {}
        self._live: dict[str, Instance] = {}
        self._audit: list[AuditRow] = []
        self._audit_limit = audit_limit
        self._backoffs: dict[str, Backoff] = {}
        self._ledger: list[SpendEntry] = []
        # Prefix sums over the ledger in append order, so spend(since) is O(log n) when entries
        # arrive in time order (always, under one clock); out-of-order entries fall back to a scan.
        self._ledger_ends: list[float] = []
        self._ledger_cum: list[float] = [0.0]
        self._ledger_sorted = True
        self._requests: dict[str, OnDemandRequest] = {}
        self._challenges: dict[str, GrandChallenge] = {}
        self._mirrors: dict[tuple[str, str], MirrorRecord] = {}
        self._settings: dict[tuple[str, str], str] = {}
        self._leases: dict[str, Lease] = {}
        self._fence: tuple[str, str, int] | None = None  # (name, holder, epoch) last acquired
        self._orphans: dict[str, Timestamp] = {}
        self._status: str | None = None  # JSON text: a read returns a fresh copy, as SQL does
        # Serialises the quota check with the request insert (threads of the bot share one store).
        self._quota_lock = threading.RLock()
        self.audit_count = 0

    # ---- instances ---------------------------------------------------------------------
    def create_intent(
        self, inst: Instance, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg = None
    ) -> Instance:
        with self._quota_lock:  # the budget check and the insert as one step, as SQL's transaction
            return self._create_intent(inst, now=now, actor=actor, reason=reason, budget=budget)

    def _create_intent(self, inst: Instance, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg) -> Instance:
        self.check_fence()
        existing = self._instances.get(inst.id)
        if existing is not None:
            return existing
        for check in checks_of(budget):
            breach = budget_breach(check, self._ledger_usd(check), self._live.values(), now)
            if breach is not None:
                raise breach
        if inst.state is not InstanceState.PLANNED:
            inst = dataclasses.replace(inst, state=InstanceState.PLANNED)
        inst = dataclasses.replace(inst, created_at=inst.created_at or now)
        self._instances[inst.id] = inst
        self._live[inst.id] = inst
        self.audit(at=now, actor=actor, kind="instance", subject=inst.id, action="->planned", reason=reason)
        return inst

    def get_instance(self, instance_id: str) -> Instance | None:
        return self._instances.get(instance_id)

    def live_instances(self) -> list[Instance]:
        return list(self._live.values())

    def instances(self, *, since: Timestamp | None = None, limit: int | None = None) -> list[Instance]:
        rows = [i for i in self._instances.values() if since is None or i.created_at >= since]
        rows.sort(key=lambda i: i.created_at, reverse=True)
        return rows[:limit] if limit is not None else rows

    def transition_instance(
        self, instance_id: str, to: InstanceState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> Instance:
        self.check_fence()
        cur = self._instances.get(instance_id)
        if cur is None:
            raise RecordNotFound(f"instance {instance_id!r}")
        check_instance_transition(cur.state, to)
        if to is InstanceState.TERMINATED and cur.terminated_at is None and "terminated_at" not in fields:
            fields["terminated_at"] = now
        new = dataclasses.replace(cur, state=to, **fields)
        self._instances[instance_id] = new
        if to is InstanceState.TERMINATED:
            self._live.pop(instance_id, None)
            self._append_ledger(ledger_entry(new))
        else:
            self._live[instance_id] = new
        self.audit(
            at=now, actor=actor, kind="instance", subject=instance_id, action=f"{cur.state}->{to}", reason=reason
        )
        return new

    def update_instance(self, instance_id: str, **fields: Any) -> Instance:
        self.check_fence()
        cur = self._instances.get(instance_id)
        if cur is None:
            raise RecordNotFound(f"instance {instance_id!r}")
        if "state" in fields:
            raise ValueError("state changes go through transition_instance")
        new = dataclasses.replace(cur, **fields)
        self._instances[instance_id] = new
        if instance_id in self._live:
            self._live[instance_id] = new
        return new

    def extend_instance(
        self, instance_id: str, extra_s: float, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg = None
    ) -> Instance:
        with self._quota_lock:  # the check and the write as one step, as SQL's transaction
            before = self._instances.get(instance_id)
            if before is None:
                raise RecordNotFound(f"instance {instance_id!r}")
            if before.state is InstanceState.TERMINATED or before.expires_at is None:
                raise ValueError(f"instance {instance_id!r} is {before.state} and cannot be extended")
            after = dataclasses.replace(before, expires_at=before.expires_at + extra_s)
            for check in checks_of(budget):
                breach = extend_breach(check, self._ledger_usd(check), self._live.values(), before, after, now)
                if breach is not None:
                    raise breach
            self._instances[instance_id] = after
            self._live[instance_id] = after
            self.audit(at=now, actor=actor, kind="instance", subject=instance_id, action="extended", reason=reason,
                       data={"expires_at": after.expires_at, "was": before.expires_at})
            return after

    def _ledger_usd(self, check: BudgetCheck) -> float:
        return sum(e.usd for e in self._ledger if e.end >= check.period_start and in_scope(check, e.team))

    # ---- audit -------------------------------------------------------------------------
    def audit_once(
        self, *, lock: str, at: Timestamp, actor: str, kind: str, subject: str, action: str, reason: str,
        data: Mapping[str, Any],
    ) -> bool:
        want = json.loads(json.dumps(dict(data)))
        with self._quota_lock:
            if any(r.kind == kind and r.subject == subject and r.action == action and dict(r.data) == want
                   for r in self._audit):
                return False
            self.audit(at=at, actor=actor, kind=kind, subject=subject, action=action, reason=reason, data=want)
            return True

    def audit(
        self,
        *,
        at: Timestamp,
        actor: str,
        kind: str,
        subject: str,
        action: str,
        reason: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.audit_count += 1
        self._audit.append(AuditRow(at, actor, kind, subject, action, reason, dict(data or {})))
        if self._audit_limit is not None and len(self._audit) > 2 * self._audit_limit:
            del self._audit[: len(self._audit) - self._audit_limit]

    def audit_rows(self, *, subject: str | None = None, kind: str | None = None, limit: int = 100) -> list[AuditRow]:
        out: list[AuditRow] = []
        for row in reversed(self._audit):
            if (subject is None or row.subject == subject) and (kind is None or row.kind == kind):
                out.append(row)
                if len(out) >= limit:
                    break
        return out

    # ---- backoff -----------------------------------------------------------------------
    def backoffs(self, now: Timestamp) -> dict[str, Backoff]:
        return {k: b for k, b in self._backoffs.items() if b.until > now}

    def record_offer_failure(
        self, offer_key: str, *, now: Timestamp, base_s: float, cap_s: float, error: str
    ) -> Backoff:
        prev = self._backoffs.get(offer_key)
        failures = (prev.failures if prev else 0) + 1
        b = Backoff(offer_key, failures, now + min(cap_s, base_s * 2 ** (failures - 1)), error)
        self._backoffs[offer_key] = b
        return b

    def record_offer_success(self, offer_key: str) -> None:
        self._backoffs.pop(offer_key, None)

    # ---- spend -------------------------------------------------------------------------
    def _append_ledger(self, e: SpendEntry) -> None:
        if self._ledger_ends and e.end < self._ledger_ends[-1]:
            self._ledger_sorted = False
        self._ledger.append(e)
        self._ledger_ends.append(e.end)
        self._ledger_cum.append(self._ledger_cum[-1] + e.usd)

    def spend_entries(self, *, since: Timestamp, until: Timestamp | None = None) -> list[SpendEntry]:
        return [e for e in self._ledger if e.end >= since and (until is None or e.end < until)]

    def spend(self, *, since: Timestamp, now: Timestamp, team: str | None = None) -> float:
        total = 0.0
        if team is None and self._ledger_sorted:
            k = bisect.bisect_left(self._ledger_ends, since)
            total = self._ledger_cum[-1] - self._ledger_cum[k]
        else:
            for e in self._ledger:
                if e.end >= since and (team is None or e.team == team):
                    total += e.usd
        for i in self._live.values():
            if i.launched_at is not None and (team is None or i.team == team):
                total += i.cost(now, BILLING_MINIMUM_S)
        return total

    # ---- requests ----------------------------------------------------------------------
    def add_request(
        self, req: OnDemandRequest, *, now: Timestamp, actor: str, quota: QuotaCheck | None = None
    ) -> OnDemandRequest:
        if quota is not None and req.state is not RequestState.REQUESTED:
            raise ValueError("a request checked against a quota is added as requested")
        with self._quota_lock:
            if req.id in self._requests:
                raise DuplicateRecord(f"request {req.id!r}")
            breaches = quota_breaches(quota, req, self._requests.values()) if quota is not None else None
            over = self._budget_breaches(quota, now) if quota is not None else []
            self._requests[req.id] = req
            self.audit(at=now, actor=actor, kind="request", subject=req.id, action=f"->{req.state}", reason="created")
            if over:
                self.audit(at=now, actor="budget", kind="request", subject=req.id, action="needs-approval",
                           reason="; ".join(over))
            elif quota is not None and not breaches:
                return self.transition_request(req.id, RequestState.AUTO_APPROVED, now=now, actor="quota", reason=quota.reason)
            return req

    def _budget_breaches(self, quota: QuotaCheck, now: Timestamp) -> list[str]:
        """As SqlStore's: the budget checks the request would not fit under, with the approved
        requests not launched yet on top."""
        pending = [r for r in self._requests.values() if r.state in PENDING_STATES]
        out = []
        for i, check in enumerate(quota.budgets):
            wait = dataclasses.replace(check, asked_usd=check.asked_usd + pending_usd(check, pending, quota.offers))
            if budget_breach(wait, self._ledger_usd(check), self._live.values(), now) is not None:
                out.append(quota.budget_reasons[i] if i < len(quota.budget_reasons) else f"budget {check.scope}")
        return out

    def recheck_request_quota(
        self, request_id: str, quota: QuotaCheck, *, now: Timestamp, actor: str
    ) -> OnDemandRequest:
        with self._quota_lock:
            req = self._requests.get(request_id)
            if req is None:
                raise RecordNotFound(f"request {request_id!r}")
            if req.state is not RequestState.AUTO_APPROVED:
                return req
            breaches = quota_breaches(quota, req, [r for r in self._requests.values() if ahead_of(req, r)])
            if not breaches:
                return req
            return self.transition_request(request_id, RequestState.REQUESTED, now=now, actor=actor,
                                           reason="held before launch: " + "; ".join(breaches))

    def get_request(self, request_id: str) -> OnDemandRequest | None:
        return self._requests.get(request_id)

    def requests(
        self, *, user: str | None = None, states: Sequence[RequestState] | None = None
    ) -> list[OnDemandRequest]:
        rows = [
            r
            for r in self._requests.values()
            if (user is None or r.user == user) and (states is None or r.state in states)
        ]
        rows.sort(key=lambda r: r.created_at)
        return rows

    def transition_request(
        self, request_id: str, to: RequestState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> OnDemandRequest:
        self.check_fence()
        cur = self._requests.get(request_id)
        if cur is None:
            raise RecordNotFound(f"request {request_id!r}")
        check_request_transition(cur.state, to)
        new = dataclasses.replace(cur, state=to, **fields)
        self._requests[request_id] = new
        self.audit(at=now, actor=actor, kind="request", subject=request_id, action=f"{cur.state}->{to}", reason=reason)
        return new

    # ---- challenges --------------------------------------------------------------------
    def add_challenge(self, gc: GrandChallenge, *, now: Timestamp, actor: str) -> GrandChallenge:
        if gc.id in self._challenges:
            raise DuplicateRecord(f"challenge {gc.id!r}")
        if not gc.phases:
            gc = dataclasses.replace(gc, phases=((str(gc.state), now),))
        self._challenges[gc.id] = gc
        self.audit(at=now, actor=actor, kind="challenge", subject=gc.id, action=f"->{gc.state}", reason="scheduled")
        return gc

    def get_challenge(self, challenge_id: str) -> GrandChallenge | None:
        return self._challenges.get(challenge_id)

    def challenges(self, *, states: Sequence[ChallengeState] | None = None) -> list[GrandChallenge]:
        rows = [c for c in self._challenges.values() if states is None or c.state in states]
        rows.sort(key=lambda c: (c.start_at, c.id))
        return rows

    def _challenge(self, challenge_id: str) -> GrandChallenge:
        """The challenge a fenced write is about to change (every caller is one)."""
        self.check_fence()
        cur = self._challenges.get(challenge_id)
        if cur is None:
            raise RecordNotFound(f"challenge {challenge_id!r}")
        return cur

    def transition_challenge(
        self, challenge_id: str, to: ChallengeState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> GrandChallenge:
        cur = self._challenge(challenge_id)
        check_challenge_transition(cur.state, to)
        check_challenge_fields(cur, fields)
        new = dataclasses.replace(cur, state=to, phases=(*cur.phases, (str(to), now)), **fields)
        self._challenges[challenge_id] = new
        self.audit(
            at=now, actor=actor, kind="challenge", subject=challenge_id, action=f"{cur.state}->{to}", reason=reason
        )
        return new

    def update_challenge(self, challenge_id: str, **fields: Any) -> GrandChallenge:
        cur = self._challenge(challenge_id)
        check_challenge_fields(cur, fields)
        new = dataclasses.replace(cur, **fields)
        self._challenges[challenge_id] = new
        return new

    def mark_preempted_released(
        self, challenge_id: str, job_ids: Sequence[str], *, now: Timestamp, actor: str, reason: str
    ) -> GrandChallenge:
        cur = self._challenge(challenge_id)
        new = dataclasses.replace(cur, preempted_jobs=released(cur, job_ids, now))
        self._challenges[challenge_id] = new
        self.audit(
            at=now, actor=actor, kind="challenge", subject=challenge_id, action="release", reason=reason,
            data={"jobs": list(job_ids)},
        )
        return new

    def mark_preempted_restored(
        self, challenge_id: str, job_ids: Sequence[str], *, now: Timestamp, actor: str, reason: str
    ) -> GrandChallenge:
        cur = self._challenge(challenge_id)
        new = dataclasses.replace(cur, preempted_jobs=restored(cur, job_ids))
        self._challenges[challenge_id] = new
        self.audit(
            at=now, actor=actor, kind="challenge", subject=challenge_id, action="restored", reason=reason,
            data={"jobs": list(job_ids)},
        )
        return new

    # ---- mirrors / settings / system state / leases ----------------------------------------
    def record_mirror(self, image: str, target: str, digest: str, *, now: Timestamp) -> None:
        self._mirrors[(image, target)] = MirrorRecord(image, target, digest, now)

    def get_mirror(self, image: str, target: str) -> MirrorRecord | None:
        return self._mirrors.get((image, target))

    def set_user_setting(self, user: str, key: str, value: str, *, now: Timestamp) -> None:
        self._settings[(user, key)] = value

    def change_user_setting(
        self, user: str, key: str, change: Callable[[str | None], str], *, now: Timestamp
    ) -> str:
        with self._quota_lock:
            value = change(self._settings.get((user, key)))
            self._settings[(user, key)] = value
            return value

    def get_user_setting(self, user: str, key: str) -> str | None:
        return self._settings.get((user, key))

    def orphan_first_seen(self, cloud_id: str, now: Timestamp) -> Timestamp:
        self.check_fence()
        return self._orphans.setdefault(cloud_id, now)

    def forget_orphans(self, keep: Collection[str]) -> None:
        self.check_fence()
        keep = set(keep)
        for cid in [c for c in self._orphans if c not in keep]:
            del self._orphans[cid]

    def set_controller_status(self, summary: Mapping[str, Any], *, now: Timestamp) -> None:
        self._status = json.dumps(summary)

    def controller_status(self) -> dict[str, Any] | None:
        return None if self._status is None else dict(json.loads(self._status))

    def try_acquire_lease(self, name: str, holder: str, *, now: Timestamp, ttl_s: float) -> bool:
        cur = self._leases.get(name)
        if cur is None:
            epoch = 1
        elif cur.holder == holder and self._fence == (name, holder, cur.epoch):
            epoch = cur.epoch  # a renewal by the object holding the epoch
        elif cur.holder == holder or cur.expires_at <= now:
            epoch = cur.epoch + 1  # changes hands (or a restarted process reclaims its id)
        else:
            return False
        self._leases[name] = Lease(name, holder, now + ttl_s, epoch)
        self._fence = (name, holder, epoch)
        return True

    def release_lease(self, name: str, holder: str) -> None:
        cur = self._leases.get(name)
        if cur is not None and cur.holder == holder:
            self._leases[name] = Lease(name, "", 0.0, cur.epoch)

    def lease(self, name: str) -> Lease | None:
        return self._leases.get(name)

    def check_fence(self) -> None:
        if self._fence is None:
            return
        name, holder, epoch = self._fence
        cur = self._leases.get(name)
        if cur is None or cur.holder != holder or cur.epoch != epoch:
            raise LeaseLost(name, holder, epoch, cur.holder if cur else "", cur.epoch if cur else 0)

    def close(self) -> None:
        pass
