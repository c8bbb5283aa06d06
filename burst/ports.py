"""The Protocols behind which every side effect of burst sits.

Each Protocol has a real implementation and an in-memory fake (``burst/sim``); one contract suite
in ``tests/contract`` runs against every implementation. The core (controller, executor, daemon,
scheduling) sees only these types.

Optional capabilities are small Protocols of their own (``PreemptionControl``,
``GangHold``, ``Closeable``, ``AsyncMirror``, ``Prewarming``). The wiring (``burst/wiring.py``),
which knows the adapters it built, hands each one to the core explicitly, or None; the core never
probes an adapter with ``isinstance``, ``getattr`` or ``hasattr`` (``tests/unit/test_core_seams.py``).

Shared rules, stated once:

* **Idempotency.** Every mutating call may be repeated with the same arguments after a crash or a
  timeout, and the second call has no further effect.
* **Not found is success** for every delete/terminate/remove/release.
* **Eventual consistency.** A list call may lag a mutation by some seconds (EC2 does). Callers
  must not conclude "it does not exist" from a single list right after a create; they reconcile
  on later ticks instead.
* **Errors** are from :mod:`burst.errors`. SDK exceptions never cross a port.
* **No sleeping.** An implementation may wait on the network, but never sleeps to pace itself;
  pacing is the controller's job (next tick, backoff table).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from burst.domain import (
    ChallengeState,
    CloudInstance,
    GrandChallenge,
    Instance,
    InstanceState,
    LaunchSpec,
    Offer,
    OnDemandRequest,
    QueueSnapshot,
    RequestState,
    Timestamp,
)


@runtime_checkable
class Clock(Protocol):
    """Source of time. The daemon uses the wall clock; the simulator a virtual one."""

    def now(self) -> Timestamp: ...


@runtime_checkable
class QueueSource(Protocol):
    """The on-prem scheduler (Slurm, Kubernetes, or the simulated cluster).

    ``snapshot`` is a read: pending and running jobs, and nodes with GPU capacity and use (GPU use
    comes from GRES/allocations, never from a node's state word). It raises
    :class:`burst.errors.QueueUnavailable` when the scheduler does not answer and
    :class:`burst.errors.QueueParseError` when its answer cannot be read; in both cases the
    controller skips the tick's actions rather than act on a partial picture.

    Node operations are idempotent and name nodes by scheduler name. ``remove_node`` of a node the
    scheduler no longer has is success.
    """

    name: str

    def snapshot(self) -> QueueSnapshot: ...

    def drain_node(self, node_name: str, reason: str) -> None: ...

    def undrain_node(self, node_name: str, reason: str) -> None: ...

    def remove_node(self, node_name: str) -> None: ...


@runtime_checkable
class PreemptionControl(Protocol):
    """Queue operations that grand challenges need. Implemented by queues that support them.

    * ``checkpoint`` asks running jobs to checkpoint (a signal); it does not stop them.
    * ``hold`` stops the jobs and keeps them queued but not schedulable (requeue-hold / suspend).
      Holding a job that is already held or finished is success.
    * ``release`` makes held jobs schedulable again. Releasing a job that is not held is success.
    """

    def checkpoint(self, job_ids: Sequence[str]) -> None: ...

    def hold(self, job_ids: Sequence[str]) -> None: ...

    def release(self, job_ids: Sequence[str]) -> None: ...


@runtime_checkable  # for tests and the wiring; the core never probes an adapter
class ChallengeQueue(Protocol):
    """What a grand challenge needs from the on-prem scheduler: ``PreemptionControl`` plus
    reservations, priorities, submission and cancel. Every call is idempotent, as in ports.py.

    * ``checkpoint``/``hold``/``release``: as ``PreemptionControl``. ``release`` of a job that is
      not held (or gone) is success.
    * ``set_priority(job_id, priority)``: an explicit priority; called right after ``release``
      (on Slurm, setting a priority on a held job would itself release it).
    * ``create_reservation(name, start, duration_s, nodes=...)``: reserve exactly these on-prem
      nodes (never burst nodes; Slurm: with ``flags=IGNORE_JOBS``; Kubernetes: cordon) from
      ``start``. Jobs that end before ``start`` by their time limit may still start there.
      Idempotent on ``name``.
    * ``delete_reservation(name)``: gone already is success (Kubernetes: uncordon).
    * ``submit_challenge(gc, name=, reservation=, nodes=)``: submit the challenge's job (its
      kind, path or text) into the reservation on those nodes, with the challenge's duration as
      time limit; returns the job id. Idempotent on ``name``: a job of that name that exists
      (queued, running or finished) is returned, never submitted again. A refusal of the job
      itself (bad script, unknown manifest) is a ``QueueError``; an unreachable scheduler
      ``QueueUnavailable``.
    * ``cancel(job_ids)``: gone is success.
    """

    def checkpoint(self, job_ids: Sequence[str]) -> None: ...

    def hold(self, job_ids: Sequence[str]) -> None: ...

    def release(self, job_ids: Sequence[str]) -> None: ...

    def set_priority(self, job_id: str, priority: int) -> None: ...

    def create_reservation(self, name: str, start: float | None, duration_s: float, *, nodes: Sequence[str]) -> str: ...

    def delete_reservation(self, name: str) -> None: ...

    def submit_challenge(self, gc: GrandChallenge, *, name: str, reservation: str, nodes: Sequence[str]) -> str: ...

    def cancel(self, job_ids: Sequence[str]) -> None: ...


class GangHold(Protocol):
    """A queue that keeps a gang member's node unschedulable until every member has joined
    (Kubernetes: the ``burst.dev/gang`` taint). ``release_gang_hold`` lifts the hold of one node;
    idempotent, and an unknown node is success."""

    def release_gang_hold(self, node_name: str) -> None: ...


class Closeable(Protocol):
    """An adapter with background work (watch threads, a pool) to stop when the daemon stops.
    ``close`` is idempotent."""

    def close(self) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """One cloud (AWS, Azure, or a simulated one).

    * ``launch(spec)`` creates exactly one instance tagged with ``spec.tags`` (which always hold
      ``burst:id = spec.intent_id``) and returns what the cloud reported. Where the cloud supports
      it the intent id is also the idempotency key (AWS ``ClientToken``, Azure VM name); callers do
      **not** rely on that: after a crash they call ``find(intent_id)`` before launching again.
      Raises ``CapacityError``/``QuotaError`` (try another offer), ``TransientProviderError``
      (try again later), ``PermanentProviderError`` (stop using this provider).
    * ``list_instances()`` lists every instance of this cluster by the ``burst:cluster`` tag, in
      every configured region, including recently terminated ones when the cloud still shows them.
      Eventually consistent.
    * ``find(intent_id)`` looks one instance up by its ``burst:id`` tag; ``None`` when absent.
      Eventually consistent like ``list_instances``.
    * ``terminate(cloud_ids)`` is batched and idempotent: ids already gone are success.
    """

    name: str

    def launch(self, spec: LaunchSpec) -> CloudInstance: ...

    def list_instances(self) -> Sequence[CloudInstance]: ...

    def find(self, intent_id: str) -> CloudInstance | None: ...

    def terminate(self, cloud_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class MirrorResult:
    source: str
    target: str  # full reference at the target registry
    digest: str  # manifest digest, identical at source and target
    bytes_uploaded: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0


@runtime_checkable
class Mirror(Protocol):
    """The image registries: copies a Harbor image into a cloud region's registry.

    * ``target_for(image, cloud, region)`` is pure naming: where the image will live.
    * ``ensure(image, cloud, region)`` makes the image present at the target with the same
      manifest digest and returns the result. Idempotent: a present image costs only HEAD calls.
      Raises :class:`burst.errors.MirrorError` subclasses.
    """

    def target_for(self, image: str, cloud: str, region: str) -> str: ...

    def ensure(self, image: str, cloud: str, region: str) -> MirrorResult: ...


MirrorKey = tuple[str, str, str]  # (image, cloud, region)


def mirror_backoff_key(image: str, cloud: str, region: str) -> str:
    """The backoff-table key under which a failed copy of ``image`` to ``cloud/region`` cools down."""
    return f"mirror:{image}@{cloud}/{region}"


@dataclass(frozen=True, slots=True)
class MirrorOutcome:
    """A finished asynchronous copy: ``result`` on success, else ``error`` (never a secret)."""

    key: MirrorKey
    result: MirrorResult | None
    error: str = ""


class AsyncMirror(Mirror, Protocol):
    """A :class:`Mirror` whose copies run off the tick (``burst.mirror_worker.MirrorWorker``).

    * ``submit(image, cloud, region)`` queues a copy and returns at once; False when the same copy
      is already in flight (idempotent).
    * ``collect()`` returns the copies finished since the last call, successes and failures; each
      outcome is returned exactly once.

    Both are called from the controller thread only.
    """

    def submit(self, image: str, cloud: str, region: str) -> bool: ...

    def collect(self) -> Sequence[MirrorOutcome]: ...


class Prewarming(Protocol):
    """A mirror that copies the most used images ahead of demand (the daemon's prewarm job).
    ``images_by_use`` maps image -> launches that used it; returns the copies that succeeded.
    A failed copy is skipped, not raised."""

    def prewarm(self, images_by_use: Mapping[str, int]) -> Sequence[MirrorResult]: ...


@runtime_checkable
class Notifier(Protocol):
    """Tells people things (Slack). ``audience`` is a user id, ``"admins"`` or ``"all"``.

    Best effort: a failure to notify is logged and never fails the tick. Texts never hold secrets.
    """

    def notify(self, audience: str, text: str) -> None: ...


class Offers(Protocol):
    """Where the controller gets purchasable offers: the catalog, filtered by configuration."""

    def offers(self) -> Sequence[Offer]: ...


# ---- the store -----------------------------------------------------------------------------


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

    scope: str  # "global", "team:<name>", or burst.budgets' "site:month", "team:<name>:day", ...
    cap_usd: float
    period_start: Timestamp
    asked_usd: float
    team: str = ""  # restrict to one team's instances when set
    reserve_per_live_usd: float = 0.0
    # Projection mode (the production budgets, burst/budgets.py): when set, each live instance of
    # the scope counts with what it is expected to cost from its launch (or intent) to its
    # expected end, its expiry or else ``now + project_live_s``
    # (:func:`burst.store.ledger.projected_usd`), instead of accrual plus a flat reserve.
    project_live_s: float | None = None
    expiry_late_s: float = 0.0  # projection mode: how long past its expiry an instance may still bill
    teams: tuple[str, ...] = ()  # with ``team``: further scheduler teams (accounts) that count as it


BudgetArg = BudgetCheck | Sequence[BudgetCheck] | None


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    """Per-user and per-team limits on on-demand requests, enforced atomically with an
    auto-approval (:meth:`Store.add_request`, :meth:`Store.recheck_request_quota`).

    The store locks the scope rows ``quota:team:<team>`` then ``quota:user:<user>`` (the
    :class:`BudgetCheck` pattern), reads the requests that hold GPUs (approved, auto-approved,
    provisioning, ready, expiring) of the request's user and team, and approves only if, with the
    request on top, concurrent GPUs stay within ``*_max_gpus`` and the GPU-hours booked by those
    created since ``period_start`` stay within ``*_gpu_hours`` (the month's limit less what
    finished requests used; the caller computes that part). ``None``: no limit of that kind.
    So concurrent requests of one user can never be auto-approved past the quota together.
    """

    user_max_gpus: int | None = None
    team_max_gpus: int | None = None
    user_gpu_hours: float | None = None
    team_gpu_hours: float | None = None
    period_start: Timestamp = 0.0
    reason: str = "within quota"
    # Budgets (issue 13): the request is auto-approved only if every check holds with
    # ``asked_usd`` (this request's estimate) plus the approved requests not launched yet (APPROVED,
    # AUTO_APPROVED: priced as the service quotes a request, the cheapest of ``offers`` that
    # fits it, for its hours) on top of what the scope has committed. Their ``cap_usd`` is a
    # soft level or a hard cap; the store locks their scopes (before the quota scopes), so two
    # requests that cross a soft level together cannot both be auto-approved.
    # ``budget_reasons`` are the words for each check, in the same order.
    budgets: tuple[BudgetCheck, ...] = ()
    budget_reasons: tuple[str, ...] = ()
    offers: tuple[Offer, ...] = ()  # what the service quotes requests from


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


@dataclass(frozen=True, slots=True)
class Lease:
    """A leader lease as stored: ``holder`` holds ``name`` until ``expires_at`` (wall time) under
    fencing token ``epoch`` (see :meth:`Store.try_acquire_lease`). ``holder`` is "" once released."""

    name: str
    holder: str
    expires_at: Timestamp
    epoch: int


class Store(Protocol):
    """burst's persistent state.

    Two implementations honour the same contract (``tests/contract/test_store_contract.py``):
    :class:`burst.store.sql.SqlStore` (SQLAlchemy 2.0 over SQLite or PostgreSQL, with Alembic
    migrations; the daemon uses it) and :class:`burst.store.memory.MemoryStore` (dictionaries;
    the simulator uses it by default so a 59-day replay runs in seconds).

    * Every state change goes through ``transition_*``, which checks the lifecycle table in
      :mod:`burst.domain` (raising ``InvalidTransition`` and writing nothing) and appends one
      audit row (time, actor, subject, from, to, reason) in the same transaction.
    * ``create_intent`` is the *intent before action* rule: it writes the PLANNED instance row
      before any cloud call. With a :class:`BudgetCheck` the budget is checked and the row written
      in one transaction with the budget row locked, so concurrent writers cannot overspend a hard
      cap. Re-creating an existing id returns the stored row unchanged (idempotent).
    * Audit rows never hold secrets; callers pass reasons, not credentials.
    * Reads return frozen domain objects; nothing returned aliases internal state.
    * The controller's own state (orphan sightings, the last tick's summary) has methods of its
      own; the user-settings table holds only users' settings.
    """

    # ---- instances ---------------------------------------------------------------------
    def create_intent(
        self, inst: Instance, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg = None
    ) -> Instance:
        """Write ``inst`` (state PLANNED) unless its id exists; return the stored row.

        Raises :class:`burst.errors.BudgetExceeded` (writing nothing) when ``budget`` (one check
        or several, every one locked and checked in this transaction) says no.
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

    def extend_instance(
        self, instance_id: str, extra_s: float, *, now: Timestamp, actor: str, reason: str, budget: BudgetArg = None
    ) -> Instance:
        """Move a live instance's ``expires_at`` ``extra_s`` later (audited), with ``budget``'s
        checks (each scope locked, in order, as :meth:`create_intent`) in the same transaction:
        the check's ``asked_usd`` is replaced by what the longer life adds to the instance's
        projected cost, read under the lock. Raises :class:`burst.errors.BudgetExceeded`
        (nothing written) when a check says no; RecordNotFound / ValueError when the instance
        is unknown, terminated or has no expiry."""
        ...

    def audit_once(
        self, *, lock: str, at: Timestamp, actor: str, kind: str, subject: str, action: str, reason: str,
        data: Mapping[str, Any],
    ) -> bool:
        """Append the audit row unless one with the same kind, subject, action and data exists;
        True when it was written. Decided under the lock row ``lock``, so concurrent callers
        write (and, after True, tell people) exactly once."""
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
    def add_request(
        self, req: OnDemandRequest, *, now: Timestamp, actor: str, quota: QuotaCheck | None = None
    ) -> OnDemandRequest:
        """Insert ``req`` (audited); an existing id is :class:`burst.errors.DuplicateRecord`.

        With ``quota`` (``req`` must be REQUESTED): in the same transaction, under the quota's
        locks, the request is moved to AUTO_APPROVED (actor ``quota``, reason ``quota.reason``,
        audited) when :class:`QuotaCheck` allows it, and stays REQUESTED otherwise. The returned
        row says which."""
        ...

    def recheck_request_quota(
        self, request_id: str, quota: QuotaCheck, *, now: Timestamp, actor: str
    ) -> OnDemandRequest:
        """The controller's check before it launches: an AUTO_APPROVED request that ``quota`` no
        longer allows, counting the requests launched or approved by an admin and the
        auto-approved ones created before it, goes back to REQUESTED (it needs an admin; audited
        with the limits it breaks). Any other request is returned unchanged. One transaction,
        under the same locks as :meth:`add_request`."""
        ...

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
        See :func:`burst.store.challenge_rules.check_challenge_fields` for what ``fields`` may not do."""
        ...

    def update_challenge(self, challenge_id: str, **fields: Any) -> GrandChallenge:
        """Change fields without a phase change (no audit row: callers audit what matters).
        Raises RecordNotFound, or ValueError per ``check_challenge_fields``."""
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

    def change_user_setting(
        self, user: str, key: str, change: Callable[[str | None], str], *, now: Timestamp
    ) -> str:
        """Read-modify-write one setting atomically: ``change(current)`` (None: unset) runs with
        the row locked and returns the new value, which is stored and returned. Concurrent
        changes are serialised, so none is lost. An exception from ``change`` writes nothing."""
        ...

    def get_user_setting(self, user: str, key: str) -> str | None: ...

    # ---- system state (the controller's own bookkeeping) ---------------------------------
    def orphan_first_seen(self, cloud_id: str, now: Timestamp) -> Timestamp:
        """When the cloud instance ``cloud_id`` was first seen as an orphan. The first call records
        ``now``; later calls return that time, across restarts, so a controller that restarts (or
        crash-loops) does not restart an orphan's grace period."""
        ...

    def forget_orphans(self, keep: Collection[str]) -> None:
        """Drop the sighting of every orphan whose cloud id is not in ``keep``."""
        ...

    def set_controller_status(self, summary: Mapping[str, Any], *, now: Timestamp) -> None:
        """Replace the summary of the last tick (JSON-serialisable values; read by ``burst status``
        and the bot)."""
        ...

    def controller_status(self) -> dict[str, Any] | None:
        """The summary last set, or None before the first tick."""
        ...

    # ---- leadership --------------------------------------------------------------------
    # The lease is a row (name, holder, expires_at, epoch). ``epoch`` increases by one every time
    # the lease changes hands: a first acquisition, a takeover of an expired or released lease,
    # and any acquisition by a store object that did not hold that epoch itself (a restarted
    # process reclaiming its own holder id). A renewal by the store object that holds the epoch
    # keeps it. The epoch never decreases (a released lease keeps its row, expired).
    #
    # **Fencing.** A store object that acquired a lease is *fenced* by it from then on: each of its
    # fenced writes first checks, in the write's own transaction (the lease row read with a
    # shared lock on PostgreSQL; SQLite writes are serialised), that the row still names this
    # holder and epoch, and otherwise raises :class:`burst.errors.LeaseLost` and writes nothing.
    # The fenced writes are those that lead to a cloud or scheduler action: ``create_intent``,
    # ``transition_instance``, ``update_instance``, ``transition_request``,
    # ``transition_challenge``, ``update_challenge``, ``mark_preempted_released``,
    # ``mark_preempted_restored``, ``orphan_first_seen`` and ``forget_orphans``. A store object
    # that never acquired a lease (the bot, the CLI, the simulator) is not fenced. After
    # ``release_lease`` by its holder the object stays fenced by the released epoch, so its
    # fenced writes are refused until it acquires again.
    def try_acquire_lease(self, name: str, holder: str, *, now: Timestamp, ttl_s: float) -> bool:
        """Take or renew the named lease. True when ``holder`` holds it until ``now + ttl_s``;
        this store object is then fenced by the lease's epoch (above).

        Atomic: of two holders racing, exactly one gets True while the lease is unexpired.
        """
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Free the lease at once when ``holder`` holds it (holder "", expired: anyone may take it
        over now); a no-op otherwise. The epoch is kept."""
        ...

    def lease(self, name: str) -> Lease | None:
        """The lease row as it is now (possibly expired), or None when it was never taken."""
        ...

    def check_fence(self) -> None:
        """Raise :class:`burst.errors.LeaseLost` when this store object is fenced and its epoch is
        no longer the lease's; a no-op for an unfenced store. For the few actions that have no
        fenced write right before them (the start of a plan's execution, orphan termination)."""
        ...

    def close(self) -> None: ...
