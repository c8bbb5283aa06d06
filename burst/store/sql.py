"""SQL :class:`burst.ports.Store` on SQLAlchemy 2.0: SQLite (default) or PostgreSQL.

Semantics are those of :class:`burst.store.memory.MemoryStore` (one contract suite runs against
both). How the guarantees are kept:

* **One transaction per method.** Every public method opens a fresh ``Session`` and commits or
  rolls back before returning, so a store object may be shared by threads and several processes
  may use the same database.
* **Writes are serialised where it matters.** On PostgreSQL, rows about to change are read with
  ``SELECT ... FOR UPDATE``; a budget check locks its scope's row in ``budget_locks`` first. On
  SQLite, pysqlite's own BEGIN handling is switched off (the documented SQLAlchemy recipe) and
  every writing method starts with ``BEGIN IMMEDIATE``, which takes the database write lock up
  front, so read-check-write sequences cannot interleave and never fail half-way with
  ``SQLITE_BUSY`` on lock upgrade. Reads use plain ``BEGIN`` and, under WAL, do not block writers.
* **Errors write nothing**: checks run before any write, and an exception rolls the transaction
  back.
* **Fenced writes** (see ``Store.try_acquire_lease``): once this object acquired a lease, each
  fenced write first reads the lease row in its own transaction (``FOR SHARE`` on PostgreSQL, so a
  takeover's ``UPDATE`` and the write are ordered; SQLite's ``BEGIN IMMEDIATE`` orders them
  anyway) and raises ``LeaseLost`` unless the row still names this holder and epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from burst.domain import (
    ChallengeEnding,
    ChallengeJobKind,
    ChallengeState,
    GrandChallenge,
    Instance,
    InstanceState,
    Market,
    OnDemandRequest,
    PreemptedJob,
    Purpose,
    RequestState,
    Timestamp,
    check_challenge_transition,
    check_instance_transition,
    check_request_transition,
)
from burst.errors import DuplicateRecord, LeaseLost, RecordNotFound
from burst.ports import AuditRow, Backoff, BudgetArg, BudgetCheck, Lease, MirrorRecord, QuotaCheck, SpendEntry
from burst.store.challenge_rules import check_challenge_fields, released, restored
from burst.store.engine import WRITE, make_engine
from burst.store.ledger import (
    BILLING_MINIMUM_S,
    PENDING_STATES,
    budget_breach,
    checks_of,
    extend_breach,
    ledger_entry,
    pending_usd,
)
from burst.store.models import (
    AuditModel,
    Base,
    BudgetLockRow,
    GrandChallengeRow,
    InstanceRow,
    LeaseRow,
    MirrorRow,
    OfferBackoffRow,
    OnDemandRequestRow,
    OrphanSightingRow,
    SpendLedgerRow,
    SystemStateRow,
    UserSettingRow,
)
from burst.store.quota_rules import HOLDING_STATES, ahead_of, lock_scopes, quota_breaches

DEFAULT_URL = "sqlite:///.burst/burst.db"
CONTROLLER_STATUS = "controller_status"  # system_state row of the last tick's summary
M = TypeVar("M", bound=Base)


# --------------------------------------------------------------------------------------------
# Row <-> domain
# --------------------------------------------------------------------------------------------

_INSTANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Instance))
_REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(OnDemandRequest))
_CHALLENGE_FIELDS = tuple(f.name for f in dataclasses.fields(GrandChallenge))


def _plain(value: Any) -> Any:
    """Domain value -> column value: enums to their string, tuples to lists (JSON)."""
    if isinstance(value, tuple):
        return [str(v) for v in value]
    if isinstance(value, str):
        return str(value)  # StrEnum -> str
    return value


def _instance_values(inst: Instance) -> dict[str, Any]:
    return {name: _plain(getattr(inst, name)) for name in _INSTANCE_FIELDS}


def _to_instance(row: InstanceRow) -> Instance:
    kw = {name: getattr(row, name) for name in _INSTANCE_FIELDS}
    kw["market"] = Market(row.market)
    kw["purpose"] = Purpose(row.purpose)
    kw["state"] = InstanceState(row.state)
    kw["for_jobs"] = tuple(row.for_jobs or ())
    return Instance(**kw)


def _request_values(req: OnDemandRequest) -> dict[str, Any]:
    return {name: _plain(getattr(req, name)) for name in _REQUEST_FIELDS}


def _to_request(row: OnDemandRequestRow) -> OnDemandRequest:
    kw = {name: getattr(row, name) for name in _REQUEST_FIELDS}
    kw["state"] = RequestState(row.state)
    return OnDemandRequest(**kw)


_PREEMPTED_FIELDS = tuple(f.name for f in dataclasses.fields(PreemptedJob))


def _challenge_values(gc: GrandChallenge) -> dict[str, Any]:
    values = {name: _plain(getattr(gc, name)) for name in _CHALLENGE_FIELDS}
    values["preempted_jobs"] = [{k: getattr(p, k) for k in _PREEMPTED_FIELDS} for p in gc.preempted_jobs]
    values["phases"] = [[str(state), at] for state, at in gc.phases]
    return values


def _to_challenge(row: GrandChallengeRow) -> GrandChallenge:
    kw = {name: getattr(row, name) for name in _CHALLENGE_FIELDS}
    kw["state"] = ChallengeState(row.state)
    kw["job_kind"] = ChallengeJobKind(row.job_kind)
    kw["ending"] = ChallengeEnding(row.ending)
    kw["preempted_jobs"] = tuple(
        PreemptedJob(**{k: v for k, v in p.items() if k in _PREEMPTED_FIELDS}) for p in row.preempted_jobs or ()
    )
    kw["phases"] = tuple((str(state), float(at)) for state, at in row.phases or ())
    kw["node_names"] = tuple(row.node_names or ())
    kw["notices"] = tuple(row.notices or ())
    return GrandChallenge(**kw)


def _assign(row: Base, values: Mapping[str, Any]) -> None:
    for k, v in values.items():
        setattr(row, k, v)


def _to_backoff(row: OfferBackoffRow) -> Backoff:
    return Backoff(row.offer_key, row.failures, row.until, row.last_error)


def _to_entry(row: SpendLedgerRow) -> SpendEntry:
    return SpendEntry(
        instance_id=row.instance_id,
        cloud=row.cloud,
        region=row.region,
        purpose=row.purpose,
        team=row.team,
        owner=row.owner,
        start=row.start_at,
        end=row.end_at,
        usd=row.usd,
    )


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class SqlStore:
    """The persistent :class:`burst.ports.Store`. Thread-safe; one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._reads = sessionmaker(bind=engine, expire_on_commit=False)
        self._writes = sessionmaker(bind=engine.execution_options(**{WRITE: True}), expire_on_commit=False)
        # An in-memory SQLite database is one connection shared by every thread (StaticPool):
        # its transactions must not interleave, so they take turns here.
        self._serial = threading.RLock() if isinstance(engine.pool, StaticPool) else contextlib.nullcontext()
        # (lease name, holder, epoch) this object last acquired; None: never, so writes are not fenced.
        self._fence: tuple[str, str, int] | None = None

    @classmethod
    def from_url(cls, url: str, *, upgrade: bool = True) -> SqlStore:
        """Open the store at ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

        With ``upgrade`` (the default) the schema is migrated to the newest Alembic revision first;
        a schema already there is left alone without loading Alembic.
        """
        engine = make_engine(url)
        if upgrade:
            from burst.store import migrate  # Alembic is loaded only when a store migrates

            if not migrate.is_current(engine):
                migrate.upgrade_engine(engine)
        return cls(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    # ---- plumbing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._serial, self._reads.begin() as s:
            yield s

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._serial, self._writes.begin() as s:
            yield s

    def _locked(self, s: Session, model: type[M], *key: Any) -> M | None:
        """Fetch a row by primary key, locked for update where the database supports it."""
        return s.get(model, key if len(key) > 1 else key[0], with_for_update=self._dialect == "postgresql")

    def _ensure_locked(self, s: Session, model: type[M], values: Mapping[str, Any], *key: Any) -> M:
        """Insert the row if missing (a concurrent insert of the same key is fine), then lock it."""
        self._insert_ignore(s, model, values)
        row = self._locked(s, model, *key)
        assert row is not None
        return row

    def _fenced(self, s: Session) -> None:
        """First step of every fenced write: refuse (LeaseLost, nothing written) unless the lease
        this object acquired is still held under the same epoch. On PostgreSQL the lease row is
        read ``FOR SHARE``: a concurrent takeover (an ``UPDATE`` of that row) either commits first,
        and this read sees its new epoch, or waits until this write has committed."""
        if self._fence is None:
            return
        name, holder, epoch = self._fence
        lock: Any = {"read": True} if self._dialect == "postgresql" else None
        row = s.get(LeaseRow, name, with_for_update=lock, populate_existing=True)
        if row is None or row.holder != holder or row.epoch != epoch:
            raise LeaseLost(name, holder, epoch, row.holder if row else "", row.epoch if row else 0)

    def _insert_ignore(self, s: Session, model: type[Base], values: Mapping[str, Any]) -> None:
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            s.execute(pg_insert(model).values(**values).on_conflict_do_nothing())
        elif self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            s.execute(sqlite_insert(model).values(**values).on_conflict_do_nothing())
        else:  # pragma: no cover - other databases are not supported targets
            try:
                with s.begin_nested():
                    s.execute(insert(model).values(**values))
            except IntegrityError:
                pass

    def _audit(
        self,
        s: Session,
        *,
        at: Timestamp,
        actor: str,
        kind: str,
        subject: str,
        action: str,
        reason: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        s.add(
            AuditModel(
                at=at,
                actor=actor,
                kind=kind,
                subject=subject,
                action=action,
                reason=reason,
                data=dict(data or {}),
            )
        )

    # ---- instances -----------------------------------------------------------------------
    def create_intent(
        self, inst: Instance, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg = None
    ) -> Instance:
        try:
            return self._create_intent(inst, now=now, actor=actor, reason=reason, budget=budget)
        except IntegrityError:
            # Another writer inserted the same id between our check and our insert.
            existing = self.get_instance(inst.id)
            if existing is None:
                raise
            return existing

    def _create_intent(
        self, inst: Instance, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg
    ) -> Instance:
        checks = checks_of(budget)
        with self._write() as s:
            self._fenced(s)
            for check in checks:
                # Lock the scopes first (in scope order): whoever holds them sees every intent
                # committed before it.
                self._ensure_locked(s, BudgetLockRow, {"scope": check.scope}, check.scope)
            existing = s.get(InstanceRow, inst.id)
            if existing is not None:
                return _to_instance(existing)
            live = self._live_rows(s) if checks else []
            for check in checks:
                breach = budget_breach(check, self._ledger_usd(s, check), live, now)
                if breach is not None:
                    raise breach
            if inst.state is not InstanceState.PLANNED:
                inst = dataclasses.replace(inst, state=InstanceState.PLANNED)
            inst = dataclasses.replace(inst, created_at=inst.created_at or now)
            row = InstanceRow(**_instance_values(inst))
            s.add(row)
            s.flush()  # surface a duplicate id here, before the audit row
            self._audit(
                s, at=now, actor=actor, kind="instance", subject=inst.id, action="->planned", reason=reason
            )
            return _to_instance(row)

    def _lock_budgets(self, s: Session, checks: Sequence[BudgetCheck]) -> None:
        """Lock the scopes' rows in scope order: whoever holds them sees every intent,
        extension and approval committed before it."""
        for scope in sorted({c.scope for c in checks}):
            self._ensure_locked(s, BudgetLockRow, {"scope": scope}, scope)

    @staticmethod
    def _live_rows(s: Session) -> list[Instance]:
        return [_to_instance(r) for r in s.scalars(select(InstanceRow).where(InstanceRow.state != InstanceState.TERMINATED.value))]

    @staticmethod
    def _ledger_usd(s: Session, check: BudgetCheck) -> float:
        q = select(func.coalesce(func.sum(SpendLedgerRow.usd), 0.0)).where(SpendLedgerRow.end_at >= check.period_start)
        if check.team:
            q = q.where(SpendLedgerRow.team.in_([check.team, *check.teams]))
        return float(s.scalar(q) or 0.0)

    def extend_instance(
        self, instance_id: str, extra_s: float, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg = None
    ) -> Instance:
        checks = checks_of(budget)
        with self._write() as s:
            self._lock_budgets(s, checks)
            row = self._locked(s, InstanceRow, instance_id)
            if row is None:
                raise RecordNotFound(f"instance {instance_id!r}")
            before = _to_instance(row)
            if before.state is InstanceState.TERMINATED or before.expires_at is None:
                raise ValueError(f"instance {instance_id!r} is {before.state} and cannot be extended")
            after = dataclasses.replace(before, expires_at=before.expires_at + extra_s)
            live = self._live_rows(s) if checks else []
            for check in checks:
                breach = extend_breach(check, self._ledger_usd(s, check), live, before, after, now)
                if breach is not None:
                    raise breach
            row.expires_at = after.expires_at
            self._audit(s, at=now, actor=actor, kind="instance", subject=instance_id, action="extended", reason=reason,
                        data={"expires_at": after.expires_at, "was": before.expires_at})
            return after

    def get_instance(self, instance_id: str) -> Instance | None:
        with self._read() as s:
            row = s.get(InstanceRow, instance_id)
            return None if row is None else _to_instance(row)

    def live_instances(self) -> list[Instance]:
        with self._read() as s:
            rows = s.scalars(
                select(InstanceRow)
                .where(InstanceRow.state != InstanceState.TERMINATED.value)
                .order_by(InstanceRow.created_at, InstanceRow.id)
            )
            return [_to_instance(r) for r in rows]

    def instances(self, *, since: Timestamp | None = None, limit: int | None = None) -> list[Instance]:
        q = select(InstanceRow).order_by(InstanceRow.created_at.desc(), InstanceRow.id)
        if since is not None:
            q = q.where(InstanceRow.created_at >= since)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            return [_to_instance(r) for r in s.scalars(q)]

    def transition_instance(
        self, instance_id: str, to: InstanceState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> Instance:
        with self._write() as s:
            self._fenced(s)
            row = self._locked(s, InstanceRow, instance_id)
            if row is None:
                raise RecordNotFound(f"instance {instance_id!r}")
            cur = _to_instance(row)
            check_instance_transition(cur.state, to)
            if to is InstanceState.TERMINATED and cur.terminated_at is None and "terminated_at" not in fields:
                fields["terminated_at"] = now
            new = dataclasses.replace(cur, state=to, **fields)
            _assign(row, _instance_values(new))
            if to is InstanceState.TERMINATED:
                e = ledger_entry(new)
                self._insert_ignore(
                    s,
                    SpendLedgerRow,
                    {
                        "instance_id": e.instance_id,
                        "cloud": e.cloud,
                        "region": e.region,
                        "purpose": e.purpose,
                        "team": e.team,
                        "owner": e.owner,
                        "start_at": e.start,
                        "end_at": e.end,
                        "usd": e.usd,
                    },
                )
            self._audit(
                s,
                at=now,
                actor=actor,
                kind="instance",
                subject=instance_id,
                action=f"{cur.state}->{to}",
                reason=reason,
            )
            return _to_instance(row)

    def update_instance(self, instance_id: str, **fields: Any) -> Instance:
        if "state" in fields:
            raise ValueError("state changes go through transition_instance")
        with self._write() as s:
            self._fenced(s)
            row = self._locked(s, InstanceRow, instance_id)
            if row is None:
                raise RecordNotFound(f"instance {instance_id!r}")
            new = dataclasses.replace(_to_instance(row), **fields)
            _assign(row, _instance_values(new))
            return _to_instance(row)

    # ---- audit ---------------------------------------------------------------------------
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
        with self._write() as s:
            self._audit(
                s, at=at, actor=actor, kind=kind, subject=subject, action=action, reason=reason, data=data
            )

    def audit_once(
        self, *, lock: str, at: Timestamp, actor: str, kind: str, subject: str, action: str, reason: str,
        data: Mapping[str, Any],
    ) -> bool:
        want = json.loads(json.dumps(dict(data)))  # as stored: JSON
        with self._write() as s:
            self._ensure_locked(s, BudgetLockRow, {"scope": lock}, lock)
            q = select(AuditModel.data).where(
                AuditModel.kind == kind, AuditModel.subject == subject, AuditModel.action == action
            )
            if any(dict(d or {}) == want for d in s.scalars(q)):
                return False
            self._audit(s, at=at, actor=actor, kind=kind, subject=subject, action=action, reason=reason, data=want)
            return True

    def audit_rows(
        self, *, subject: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[AuditRow]:
        q = select(AuditModel).order_by(AuditModel.id.desc()).limit(limit)
        if subject is not None:
            q = q.where(AuditModel.subject == subject)
        if kind is not None:
            q = q.where(AuditModel.kind == kind)
        with self._read() as s:
            return [
                AuditRow(r.at, r.actor, r.kind, r.subject, r.action, r.reason, dict(r.data or {}))
                for r in s.scalars(q)
            ]

    # ---- offer backoff -------------------------------------------------------------------
    def backoffs(self, now: Timestamp) -> dict[str, Backoff]:
        with self._read() as s:
            rows = s.scalars(
                select(OfferBackoffRow).where(OfferBackoffRow.until > now).order_by(OfferBackoffRow.offer_key)
            )
            return {r.offer_key: _to_backoff(r) for r in rows}

    def record_offer_failure(
        self, offer_key: str, *, now: Timestamp, base_s: float, cap_s: float, error: str
    ) -> Backoff:
        with self._write() as s:
            row = self._ensure_locked(
                s,
                OfferBackoffRow,
                {"offer_key": offer_key, "failures": 0, "until": now, "last_error": ""},
                offer_key,
            )
            failures = row.failures + 1
            b = Backoff(offer_key, failures, now + min(cap_s, base_s * 2 ** (failures - 1)), error)
            row.failures, row.until, row.last_error = b.failures, b.until, b.last_error
            return b

    def record_offer_success(self, offer_key: str) -> None:
        with self._write() as s:
            s.execute(delete(OfferBackoffRow).where(OfferBackoffRow.offer_key == offer_key))

    # ---- spend ---------------------------------------------------------------------------
    def spend_entries(self, *, since: Timestamp, until: Timestamp | None = None) -> list[SpendEntry]:
        q = select(SpendLedgerRow).where(SpendLedgerRow.end_at >= since).order_by(SpendLedgerRow.id)
        if until is not None:
            q = q.where(SpendLedgerRow.end_at < until)
        with self._read() as s:
            return [_to_entry(r) for r in s.scalars(q)]

    def spend(self, *, since: Timestamp, now: Timestamp, team: str | None = None) -> float:
        with self._read() as s:
            return self._spend(s, since=since, now=now, team=team)

    def _spend(self, s: Session, *, since: Timestamp, now: Timestamp, team: str | None) -> float:
        q = select(func.coalesce(func.sum(SpendLedgerRow.usd), 0.0)).where(SpendLedgerRow.end_at >= since)
        if team is not None:
            q = q.where(SpendLedgerRow.team == team)
        total = float(s.scalar(q) or 0.0)
        live = select(InstanceRow).where(
            InstanceRow.state != InstanceState.TERMINATED.value, InstanceRow.launched_at.is_not(None)
        )
        if team is not None:
            live = live.where(InstanceRow.team == team)
        for row in s.scalars(live.order_by(InstanceRow.created_at, InstanceRow.id)):
            total += _to_instance(row).cost(now, BILLING_MINIMUM_S)
        return total

    # ---- on-demand requests --------------------------------------------------------------
    def add_request(
        self, req: OnDemandRequest, *, now: Timestamp, actor: str, quota: QuotaCheck | None = None
    ) -> OnDemandRequest:
        if quota is None:
            return self._add(
                OnDemandRequestRow, "request", req.id, _request_values(req), _to_request,
                now=now, actor=actor, action=f"->{req.state}", reason="created",
            )
        if req.state is not RequestState.REQUESTED:
            raise ValueError("a request checked against a quota is added as requested")
        try:
            with self._write() as s:
                self._lock_budgets(s, quota.budgets)  # "budget:..." sorts before "quota:...": one lock order
                self._lock_quota(s, req)
                if s.get(OnDemandRequestRow, req.id) is not None:
                    raise DuplicateRecord(f"request {req.id!r}")
                holding = self._holding(s, req)
                over = self._budget_breaches(s, quota, now)
                row = OnDemandRequestRow(**_request_values(req))
                s.add(row)
                s.flush()
                self._audit(s, at=now, actor=actor, kind="request", subject=req.id, action=f"->{req.state}", reason="created")
                if over:
                    self._audit(s, at=now, actor="budget", kind="request", subject=req.id, action="needs-approval",
                                reason="; ".join(over))
                elif not quota_breaches(quota, req, holding):
                    check_request_transition(req.state, RequestState.AUTO_APPROVED)
                    row.state = RequestState.AUTO_APPROVED.value
                    self._audit(s, at=now, actor="quota", kind="request", subject=req.id,
                                action=f"{req.state}->{RequestState.AUTO_APPROVED}", reason=quota.reason)
                return _to_request(row)
        except IntegrityError:
            raise DuplicateRecord(f"request {req.id!r}") from None

    def recheck_request_quota(
        self, request_id: str, quota: QuotaCheck, *, now: Timestamp, actor: str
    ) -> OnDemandRequest:
        cur = self.get_request(request_id)
        if cur is None:
            raise RecordNotFound(f"request {request_id!r}")
        if cur.state is not RequestState.AUTO_APPROVED:
            return cur
        with self._write() as s:
            self._fenced(s)  # a hold changes a request the controller acts on: leader only
            self._lock_quota(s, cur)
            row = self._locked(s, OnDemandRequestRow, request_id)
            assert row is not None
            req = _to_request(row)
            if req.state is not RequestState.AUTO_APPROVED:
                return req
            breaches = quota_breaches(quota, req, [r for r in self._holding(s, req) if ahead_of(req, r)])
            if not breaches:
                return req
            check_request_transition(req.state, RequestState.REQUESTED)
            row.state = RequestState.REQUESTED.value
            self._audit(s, at=now, actor=actor, kind="request", subject=request_id,
                        action=f"{req.state}->{RequestState.REQUESTED}",
                        reason="held before launch: " + "; ".join(breaches))
            return _to_request(row)

    def _budget_breaches(self, s: Session, quota: QuotaCheck, now: Timestamp) -> list[str]:
        """The words of every budget check of ``quota`` that the request (with the approved
        requests not launched yet) would not fit under; read under the budgets' locks."""
        if not quota.budgets:
            return []
        live = self._live_rows(s)
        pending = [_to_request(r) for r in s.scalars(
            select(OnDemandRequestRow).where(OnDemandRequestRow.state.in_([str(x) for x in PENDING_STATES])))]
        out = []
        for i, check in enumerate(quota.budgets):
            wait = dataclasses.replace(check, asked_usd=check.asked_usd + pending_usd(check, pending, quota.offers))
            if budget_breach(wait, self._ledger_usd(s, check), live, now) is not None:
                out.append(quota.budget_reasons[i] if i < len(quota.budget_reasons) else f"budget {check.scope}")
        return out

    def _lock_quota(self, s: Session, req: OnDemandRequest) -> None:
        for scope in lock_scopes(req):
            self._ensure_locked(s, BudgetLockRow, {"scope": scope}, scope)

    def _holding(self, s: Session, req: OnDemandRequest) -> list[OnDemandRequest]:
        q = select(OnDemandRequestRow).where(
            OnDemandRequestRow.state.in_([str(st) for st in HOLDING_STATES]),
            (OnDemandRequestRow.user == req.user) | (OnDemandRequestRow.team == req.team),
        )
        return [_to_request(r) for r in s.scalars(q)]

    def _add(
        self, row_cls: Any, kind: str, key: str, values: dict[str, Any], to_domain: Any,
        *, now: Timestamp, actor: str, action: str, reason: str,
    ) -> Any:
        """Insert a request or challenge row and its audit row in one transaction; an existing
        id (seen first, or lost in a race) is DuplicateRecord."""
        try:
            with self._write() as s:
                if s.get(row_cls, key) is not None:
                    raise DuplicateRecord(f"{kind} {key!r}")
                row = row_cls(**values)
                s.add(row)
                s.flush()
                self._audit(s, at=now, actor=actor, kind=kind, subject=key, action=action, reason=reason)
                return to_domain(row)
        except IntegrityError:
            raise DuplicateRecord(f"{kind} {key!r}") from None

    def get_request(self, request_id: str) -> OnDemandRequest | None:
        with self._read() as s:
            row = s.get(OnDemandRequestRow, request_id)
            return None if row is None else _to_request(row)

    def requests(
        self, *, user: str | None = None, states: Sequence[RequestState] | None = None
    ) -> list[OnDemandRequest]:
        q = select(OnDemandRequestRow).order_by(OnDemandRequestRow.created_at, OnDemandRequestRow.id)
        if user is not None:
            q = q.where(OnDemandRequestRow.user == user)
        if states is not None:
            q = q.where(OnDemandRequestRow.state.in_([str(st) for st in states]))
        with self._read() as s:
            return [_to_request(r) for r in s.scalars(q)]

    def transition_request(
        self, request_id: str, to: RequestState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> OnDemandRequest:
        return self._transition(
            OnDemandRequestRow, "request", request_id, to, _to_request, _request_values, check_request_transition,
            now=now, actor=actor, reason=reason, fields=fields,
        )

    def _transition(
        self,
        row_cls: Any,
        kind: str,
        key: str,
        to: Any,
        to_domain: Any,
        values: Any,
        check: Any,
        *,
        now: Timestamp,
        actor: str,
        reason: str,
        fields: dict[str, Any],
    ) -> Any:
        """One table-checked state change of a request or challenge, audited in the same transaction."""
        with self._write() as s:
            self._fenced(s)
            row = self._locked(s, row_cls, key)
            if row is None:
                raise RecordNotFound(f"{kind} {key!r}")
            cur = to_domain(row)
            check(cur.state, to)
            new = dataclasses.replace(cur, state=to, **fields)
            _assign(row, values(new))
            self._audit(s, at=now, actor=actor, kind=kind, subject=key, action=f"{cur.state}->{to}", reason=reason)
            return to_domain(row)

    # ---- grand challenges ----------------------------------------------------------------
    def add_challenge(self, gc: GrandChallenge, *, now: Timestamp, actor: str) -> GrandChallenge:
        if not gc.phases:
            gc = dataclasses.replace(gc, phases=((str(gc.state), now),))
        return self._add(
            GrandChallengeRow, "challenge", gc.id, _challenge_values(gc), _to_challenge,
            now=now, actor=actor, action=f"->{gc.state}", reason="scheduled",
        )

    def get_challenge(self, challenge_id: str) -> GrandChallenge | None:
        with self._read() as s:
            row = s.get(GrandChallengeRow, challenge_id)
            return None if row is None else _to_challenge(row)

    def challenges(self, *, states: Sequence[ChallengeState] | None = None) -> list[GrandChallenge]:
        q = select(GrandChallengeRow).order_by(GrandChallengeRow.start_at, GrandChallengeRow.id)
        if states is not None:
            q = q.where(GrandChallengeRow.state.in_([str(st) for st in states]))
        with self._read() as s:
            return [_to_challenge(r) for r in s.scalars(q)]

    def transition_challenge(
        self, challenge_id: str, to: ChallengeState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> GrandChallenge:
        with self._write() as s:
            self._fenced(s)
            row = self._locked(s, GrandChallengeRow, challenge_id)
            if row is None:
                raise RecordNotFound(f"challenge {challenge_id!r}")
            cur = _to_challenge(row)
            check_challenge_transition(cur.state, to)
            check_challenge_fields(cur, fields)
            new = dataclasses.replace(cur, state=to, phases=(*cur.phases, (str(to), now)), **fields)
            _assign(row, _challenge_values(new))
            self._audit(
                s, at=now, actor=actor, kind="challenge", subject=challenge_id, action=f"{cur.state}->{to}",
                reason=reason,
            )
            return _to_challenge(row)

    def _change_challenge(
        self, challenge_id: str, change: Any, audit: Mapping[str, Any] | None = None
    ) -> GrandChallenge:
        """Read-modify-write one challenge row under its lock; ``change(cur) -> new``."""
        with self._write() as s:
            self._fenced(s)
            row = self._locked(s, GrandChallengeRow, challenge_id)
            if row is None:
                raise RecordNotFound(f"challenge {challenge_id!r}")
            new = change(_to_challenge(row))
            _assign(row, _challenge_values(new))
            if audit is not None:
                self._audit(s, subject=challenge_id, kind="challenge", **audit)
            return _to_challenge(row)

    def update_challenge(self, challenge_id: str, **fields: Any) -> GrandChallenge:
        def change(cur: GrandChallenge) -> GrandChallenge:
            check_challenge_fields(cur, fields)
            return dataclasses.replace(cur, **fields)

        return self._change_challenge(challenge_id, change)

    def mark_preempted_released(
        self, challenge_id: str, job_ids: Sequence[str], *, now: Timestamp, actor: str, reason: str
    ) -> GrandChallenge:
        return self._change_challenge(
            challenge_id,
            lambda cur: dataclasses.replace(cur, preempted_jobs=released(cur, job_ids, now)),
            {"at": now, "actor": actor, "action": "release", "reason": reason, "data": {"jobs": list(job_ids)}},
        )

    def mark_preempted_restored(
        self, challenge_id: str, job_ids: Sequence[str], *, now: Timestamp, actor: str, reason: str
    ) -> GrandChallenge:
        return self._change_challenge(
            challenge_id,
            lambda cur: dataclasses.replace(cur, preempted_jobs=restored(cur, job_ids)),
            {"at": now, "actor": actor, "action": "restored", "reason": reason, "data": {"jobs": list(job_ids)}},
        )

    # ---- mirrors -------------------------------------------------------------------------
    def record_mirror(self, image: str, target: str, digest: str, *, now: Timestamp) -> None:
        with self._write() as s:
            row = self._ensure_locked(
                s, MirrorRow, {"image": image, "target": target, "digest": digest, "at": now}, image, target
            )
            row.digest, row.at = digest, now

    def get_mirror(self, image: str, target: str) -> MirrorRecord | None:
        with self._read() as s:
            row = s.get(MirrorRow, (image, target))
            return None if row is None else MirrorRecord(row.image, row.target, row.digest, row.at)

    # ---- user settings -------------------------------------------------------------------
    def set_user_setting(self, user: str, key: str, value: str, *, now: Timestamp) -> None:
        with self._write() as s:
            row = self._ensure_locked(
                s, UserSettingRow, {"user": user, "key": key, "value": value, "updated_at": now}, user, key
            )
            row.value, row.updated_at = value, now

    def change_user_setting(
        self, user: str, key: str, change: Callable[[str | None], str], *, now: Timestamp
    ) -> str:
        with self._write() as s:
            # Lock the row, or (when unset) a lock row of its own: the first two writers of a
            # setting that does not exist yet must not both read None.
            self._ensure_locked(s, BudgetLockRow, {"scope": f"setting:{user}:{key}"}, f"setting:{user}:{key}")
            row = self._locked(s, UserSettingRow, user, key)
            value = change(None if row is None else row.value)
            if row is None:
                s.add(UserSettingRow(user=user, key=key, value=value, updated_at=now))
            else:
                row.value, row.updated_at = value, now
            return value

    def get_user_setting(self, user: str, key: str) -> str | None:
        with self._read() as s:
            row = s.get(UserSettingRow, (user, key))
            return None if row is None else row.value

    # ---- system state --------------------------------------------------------------------
    def orphan_first_seen(self, cloud_id: str, now: Timestamp) -> Timestamp:
        with self._write() as s:
            self._fenced(s)
            self._insert_ignore(s, OrphanSightingRow, {"cloud_id": cloud_id, "first_seen": now})
            row = s.get(OrphanSightingRow, cloud_id)
            assert row is not None
            return row.first_seen

    def forget_orphans(self, keep: Collection[str]) -> None:
        with self._write() as s:
            self._fenced(s)
            s.execute(delete(OrphanSightingRow).where(OrphanSightingRow.cloud_id.not_in(list(keep))))

    def set_controller_status(self, summary: Mapping[str, Any], *, now: Timestamp) -> None:
        value = json.loads(json.dumps(summary))  # what the database will hand back, checked here
        with self._write() as s:
            row = self._ensure_locked(
                s, SystemStateRow, {"name": CONTROLLER_STATUS, "value": value, "updated_at": now}, CONTROLLER_STATUS
            )
            row.value, row.updated_at = value, now

    def controller_status(self) -> dict[str, Any] | None:
        with self._read() as s:
            row = s.get(SystemStateRow, CONTROLLER_STATUS)
            return None if row is None else dict(row.value)

    # ---- leadership ----------------------------------------------------------------------
    def try_acquire_lease(self, name: str, holder: str, *, now: Timestamp, ttl_s: float) -> bool:
        expires = now + ttl_s
        for _ in range(2):
            try:
                with self._write() as s:
                    # Locked for update on PostgreSQL: of two racing holders the second waits and
                    # then reads the first one's row; SQLite's BEGIN IMMEDIATE serialises anyway.
                    row = self._locked(s, LeaseRow, name)
                    if row is None:
                        s.execute(insert(LeaseRow).values(name=name, holder=holder, expires_at=expires, epoch=1))
                        epoch = 1
                    elif row.holder == holder and self._fence == (name, holder, row.epoch):
                        row.expires_at = expires  # a renewal: same holder, same object, same epoch
                        epoch = row.epoch
                    elif row.holder == holder or row.expires_at <= now:
                        # Changes hands: a takeover of an expired or released lease, or this
                        # holder id reclaimed by another process (a restart): a new epoch fences
                        # whoever acted under the old one.
                        row.holder, row.expires_at, row.epoch = holder, expires, row.epoch + 1
                        epoch = row.epoch
                    else:
                        return False  # held by someone else and not expired
            except IntegrityError:
                continue  # a concurrent first acquisition inserted the row; look again
            self._fence = (name, holder, epoch)
            return True
        return False

    def release_lease(self, name: str, holder: str) -> None:
        # The row stays, free and expired, so the epoch only ever grows; its holder's fenced
        # writes are refused from now on.
        with self._write() as s:
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder)
                .values(holder="", expires_at=0.0)
                .execution_options(synchronize_session=False)
            )

    def lease(self, name: str) -> Lease | None:
        with self._read() as s:
            row = s.get(LeaseRow, name)
            return None if row is None else Lease(row.name, row.holder, row.expires_at, row.epoch)

    def check_fence(self) -> None:
        if self._fence is None:
            return
        with self._write() as s:
            self._fenced(s)
