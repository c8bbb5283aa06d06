"""The Store: burst's persistent state, behind one Protocol.

Two implementations honour the same contract (``tests/contract/test_store_contract.py``):

* :class:`burst.store.sql.SqlStore`: SQLAlchemy 2.0 over SQLite (default) or PostgreSQL, with
  Alembic migrations. The daemon uses it.
* :class:`burst.store.memory.MemoryStore`: dictionaries. The simulator uses it by default so a
  59-day replay runs in seconds; ``burst simulate --store URL`` swaps in the SQL store.

Contract, for both:

* Every state change goes through ``transition_*``, which checks the lifecycle table in
  :mod:`burst.domain` (raising ``InvalidTransition`` and writing nothing) and appends one audit
  row (time, actor, subject, from, to, reason) in the same transaction.
* ``create_intent`` is the *intent before action* rule: it writes the PLANNED instance row before
  any cloud call. With a :class:`BudgetCheck` the budget is checked and the row written in one
  transaction with the budget row locked, so concurrent writers cannot overspend a hard cap.
  Re-creating an existing id returns the stored row unchanged (idempotent).
* Audit rows never hold secrets; callers pass reasons, not credentials.
* Reads return frozen domain objects; nothing returned aliases internal state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from burst.domain import (
    ChallengeState,
    GrandChallenge,
    Instance,
    InstanceState,
    OnDemandRequest,
    PreemptedJob,
    RequestState,
    Timestamp,
)


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: Timestamp
    actor: str
    kind: str  # "instance", "request", "challenge", "orphan", "admin", "decision", ...
    subject: str  # id of the thing acted on
    action: str  # e.g. "planned->launching", "terminate-orphan", "denied"
    reason: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Cool-down of one offer after capacity/quota errors. ``until`` is when it may be tried again."""

    offer_key: str
    failures: int
    until: Timestamp
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """A hard cap to enforce atomically with an intent.

    ``committed`` spend for the scope is the ledger since ``period_start`` plus what live instances
    of the scope have accrued by ``now``, plus ``reserve_per_live_usd`` for each live instance
    (money already committed by minimum billing and the time to notice idleness). The intent is
    written only if ``committed + asked_usd <= cap_usd``.
    """

    scope: str  # "global" or "team:<name>"
    cap_usd: float
    period_start: Timestamp
    asked_usd: float
    team: str = ""  # restrict to one team's instances when set
    reserve_per_live_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class SpendEntry:
    instance_id: str
    cloud: str
    region: str
    purpose: str
    team: str
    owner: str
    start: Timestamp
    end: Timestamp
    usd: float


@dataclass(frozen=True, slots=True)
class MirrorRecord:
    image: str
    target: str
    digest: str
    at: Timestamp


class Store(Protocol):
    # ---- instances ---------------------------------------------------------------------
    def create_intent(
        self, inst: Instance, *, now: Timestamp, actor: str, reason: str, budget: BudgetCheck | None = None
    ) -> Instance:
        """Write ``inst`` (state PLANNED) unless its id exists; return the stored row.

        Raises :class:`burst.errors.BudgetExceeded` (writing nothing) when ``budget`` says no.
        """
        ...

    def get_instance(self, instance_id: str) -> Instance | None: ...

    def live_instances(self) -> list[Instance]:
        """Every instance not TERMINATED (a cloud resource may exist for each)."""
        ...

    def instances(self, *, since: Timestamp | None = None, limit: int | None = None) -> list[Instance]:
        """All instances, newest first; ``since`` filters on ``created_at``."""
        ...

    def transition_instance(
        self,
        instance_id: str,
        to: InstanceState,
        *,
        now: Timestamp,
        actor: str,
        reason: str,
        **fields: Any,
    ) -> Instance:
        """Move to ``to`` (table-checked), set ``fields`` (Instance attribute names), audit.

        On reaching TERMINATED the instance's cost is appended to the spend ledger (once).
        Raises ``RecordNotFound``/``InvalidTransition``; nothing is written on error.
        """
        ...

    def update_instance(self, instance_id: str, **fields: Any) -> Instance:
        """Set non-state fields (idle_since, node_name, address, last_error...). Not audited."""
        ...

    # ---- audit -------------------------------------------------------------------------
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
    ) -> None: ...

    def audit_rows(self, *, subject: str | None = None, kind: str | None = None, limit: int = 100) -> list[AuditRow]:
        """Newest first."""
        ...

    # ---- offer backoff -----------------------------------------------------------------
    def backoffs(self, now: Timestamp) -> dict[str, Backoff]:
        """Offers still cooling down at ``now``."""
        ...

    def record_offer_failure(
        self, offer_key: str, *, now: Timestamp, base_s: float, cap_s: float, error: str
    ) -> Backoff:
        """Increment the failure count; cool down for ``min(cap_s, base_s * 2**(failures-1))``."""
        ...

    def record_offer_success(self, offer_key: str) -> None:
        """Reset the offer's backoff (no-op when it has none)."""
        ...

    # ---- spend -------------------------------------------------------------------------
    def spend_entries(self, *, since: Timestamp, until: Timestamp | None = None) -> list[SpendEntry]:
        """Ledger entries of instances terminated within [since, until)."""
        ...

    def spend(self, *, since: Timestamp, now: Timestamp, team: str | None = None) -> float:
        """USD spent since ``since``: the ledger plus live instances' accrual up to ``now``."""
        ...

    # ---- on-demand requests ------------------------------------------------------------
    def add_request(self, req: OnDemandRequest, *, now: Timestamp, actor: str) -> OnDemandRequest: ...

    def get_request(self, request_id: str) -> OnDemandRequest | None: ...

    def requests(
        self, *, user: str | None = None, states: Sequence[RequestState] | None = None
    ) -> list[OnDemandRequest]: ...

    def transition_request(
        self, request_id: str, to: RequestState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> OnDemandRequest: ...

    # ---- grand challenges --------------------------------------------------------------
    def add_challenge(self, gc: GrandChallenge, *, now: Timestamp, actor: str) -> GrandChallenge: ...

    def get_challenge(self, challenge_id: str) -> GrandChallenge | None: ...

    def challenges(self, *, states: Sequence[ChallengeState] | None = None) -> list[GrandChallenge]: ...

    def transition_challenge(
        self, challenge_id: str, to: ChallengeState, *, now: Timestamp, actor: str, reason: str, **fields: Any
    ) -> GrandChallenge:
        """A table-checked phase change, audited, with ``(to, now)`` appended to ``phases``, and
        ``fields`` written in the same transaction (the preempted set goes in with PREEMPTING).
        See :func:`check_challenge_fields` for what ``fields`` may not do."""
        ...

    def update_challenge(self, challenge_id: str, **fields: Any) -> GrandChallenge:
        """Change fields without a phase change (no audit row: callers audit what matters).
        Raises RecordNotFound, or ValueError per :func:`check_challenge_fields`."""
        ...

    def mark_preempted_released(
        self, challenge_id: str, job_ids: Sequence[str], *, now: Timestamp, actor: str, reason: str
    ) -> GrandChallenge:
        """Set ``released_at = now`` on those preempted jobs that have none (a job already marked
        keeps its first time; ids not in the set are ignored), audited as one ``release`` row."""
        ...

    def mark_preempted_restored(
        self, challenge_id: str, job_ids: Sequence[str], *, now: Timestamp, actor: str, reason: str
    ) -> GrandChallenge:
        """Set ``restored`` on those preempted jobs; audited as one ``restored`` row."""
        ...

    # ---- mirrors -----------------------------------------------------------------------
    def record_mirror(self, image: str, target: str, digest: str, *, now: Timestamp) -> None: ...

    def get_mirror(self, image: str, target: str) -> MirrorRecord | None: ...

    # ---- user settings (ssh keys) ------------------------------------------------------
    def set_user_setting(self, user: str, key: str, value: str, *, now: Timestamp) -> None: ...

    def get_user_setting(self, user: str, key: str) -> str | None: ...

    # ---- leadership --------------------------------------------------------------------
    def try_acquire_lease(self, name: str, holder: str, *, now: Timestamp, ttl_s: float) -> bool:
        """Take or renew the named lease. True when ``holder`` holds it until ``now + ttl_s``.

        Atomic: of two holders racing, exactly one gets True while the lease is unexpired.
        """
        ...

    def release_lease(self, name: str, holder: str) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Grand-challenge field rules, shared by every Store implementation
# --------------------------------------------------------------------------------------------


def check_challenge_fields(cur: GrandChallenge, fields: Mapping[str, Any]) -> None:
    """Refuse writes that would break the runner's crash safety.

    * ``state`` and ``phases`` change only through ``transition_challenge``.
    * The preempted set, once recorded (non-empty), is never replaced: restore must give back
      exactly the jobs that were preempted. Its per-job flags change through the ``mark_*``
      methods only.
    """
    for name in ("state", "phases", "id"):
        if name in fields:
            raise ValueError(f"challenge field {name!r} cannot be set here")
    if "preempted_jobs" in fields and cur.preempted_jobs and tuple(fields["preempted_jobs"]) != cur.preempted_jobs:
        raise ValueError(f"challenge {cur.id!r}: the preempted set is already recorded")


def released(gc: GrandChallenge, job_ids: Sequence[str], now: Timestamp) -> tuple[PreemptedJob, ...]:
    want = set(job_ids)
    return tuple(
        dataclasses.replace(p, released_at=now) if p.job_id in want and p.released_at is None else p
        for p in gc.preempted_jobs
    )


def restored(gc: GrandChallenge, job_ids: Sequence[str]) -> tuple[PreemptedJob, ...]:
    want = set(job_ids)
    return tuple(dataclasses.replace(p, restored=True) if p.job_id in want else p for p in gc.preempted_jobs)
