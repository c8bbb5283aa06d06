"""Domain types of burst: frozen dataclasses, enums and the lifecycle tables.

Everything here is plain data. No I/O, no clock: time is a ``Timestamp`` (POSIX seconds as a
float) passed in by the caller, so the same objects serve the live daemon and the simulator.

The three lifecycles (instance, on-demand request, grand challenge) are transition tables: a
``dict`` from ``(from, to)`` to a one-line comment that says why the edge exists. ``check_*``
raises :class:`InvalidTransition` for any edge that is not in its table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TypeAlias

Timestamp: TypeAlias = float


def month_start(now: Timestamp) -> Timestamp:
    """Start of ``now``'s calendar month in UTC: where monthly budgets and spend reports begin."""
    d = datetime.fromtimestamp(now, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


def day_start(now: Timestamp) -> Timestamp:
    """Start of ``now``'s day in UTC: where daily budgets and spend reports begin."""
    d = datetime.fromtimestamp(now, UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
"""POSIX seconds. Injected by a :class:`burst.ports.Clock`; never read from the wall clock here."""

EMPTY_LABELS: Mapping[str, str] = MappingProxyType({})


def _no_labels() -> Mapping[str, str]:
    return EMPTY_LABELS


class InvalidTransition(ValueError):
    """A state change that its lifecycle table does not allow."""

    def __init__(self, kind: str, src: str, dst: str) -> None:
        super().__init__(f"invalid {kind} transition {src!r} -> {dst!r}")
        self.kind, self.src, self.dst = kind, src, dst


# --------------------------------------------------------------------------------------------
# Clouds and offers
# --------------------------------------------------------------------------------------------


class CloudName(StrEnum):
    AWS = "aws"
    AZURE = "azure"


class Market(StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


@dataclass(frozen=True, slots=True)
class Offer:
    """One purchasable shape: an instance type in a zone (or region), on one market, at a price.

    ``zone`` is the AWS AZ id (``use1-az1``) or ``""`` where the cloud prices per region (Azure).
    """

    cloud: str
    instance_type: str
    region: str
    zone: str
    gpu_model: str
    gpu_count: int
    gpu_memory_gib: float
    price_per_hour: float
    market: Market = Market.ON_DEMAND
    vcpus: float = 0.0
    memory_gib: float = 0.0

    @property
    def key(self) -> str:
        """Stable identity of the offer, used for backoff bookkeeping."""
        return f"{self.cloud}/{self.region}/{self.zone or '-'}/{self.instance_type}/{self.market}"

    @property
    def location_key(self) -> str:
        """cloud/region: the unit a gang must stay inside."""
        return f"{self.cloud}/{self.region}"

    @property
    def price_per_gpu_hour(self) -> float:
        return self.price_per_hour / self.gpu_count


# --------------------------------------------------------------------------------------------
# On-prem queue: jobs and nodes
# --------------------------------------------------------------------------------------------


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    HELD = "held"  # held by an admin or by burst (grand challenge); not schedulable
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the on-prem queue shows it.

    ``gpus`` is the job's total GPU count. A job on one node has ``nodes == 1``; a gang spans
    ``nodes`` whole nodes with ``gpus_per_node`` GPUs on each. ``start_time`` is known only for a
    running job; besides it and ``submit_time`` a policy may use only ``time_limit_s`` (an upper
    bound the user gave, where the scheduler has one): the queue never tells how long a job will
    really run.
    """

    id: str
    gpus: int
    submit_time: Timestamp
    state: JobState = JobState.PENDING
    owner: str = ""
    team: str = ""
    gpus_per_node: int = 0  # 0: same as gpus (single node)
    nodes: int = 1
    labels: Mapping[str, str] = field(default_factory=_no_labels)
    image: str = ""
    may_burst: bool = True
    gpu_model: str = ""  # required accelerator, "" for any
    min_gpu_memory_gib: float = 0.0
    start_time: Timestamp | None = None
    node_names: tuple[str, ...] = ()
    reason: str = ""  # scheduler's pending reason (Resources, Priority, ...)
    priority: int = 0
    # The scheduler's wall-time limit, when it has one (Slurm time_limit, Kubernetes
    # activeDeadlineSeconds). A running job is expected to end by start_time + time_limit_s.
    time_limit_s: float | None = None

    def expected_end(self) -> Timestamp | None:
        """start_time + time limit; None when either is unknown (then: may run forever)."""
        if self.start_time is None or self.time_limit_s is None:
            return None
        return self.start_time + self.time_limit_s

    @property
    def per_node(self) -> int:
        return self.gpus_per_node or self.gpus

    @property
    def is_gang(self) -> bool:
        return self.nodes > 1

    def waited(self, now: Timestamp) -> float:
        return max(0.0, now - self.submit_time)

    def elapsed(self, now: Timestamp) -> float:
        return 0.0 if self.start_time is None else max(0.0, now - self.start_time)


@dataclass(frozen=True, slots=True)
class Node:
    """A scheduler node. Burst nodes carry the id of the instance behind them."""

    name: str
    gpus: int
    gpus_used: int = 0
    gpu_model: str = ""
    schedulable: bool = True  # False when drained / cordoned, or not ready
    # False when the node does not answer (Kubernetes NotReady, Slurm DOWN / NOT_RESPONDING /
    # FAIL): its capacity cannot come back by an uncordon, so burst never takes it back.
    ready: bool = True
    instance_id: str = ""  # burst instance id when this node is cloud capacity
    labels: Mapping[str, str] = field(default_factory=_no_labels)
    running_jobs: int = 0

    @property
    def gpus_free(self) -> int:
        return max(0, self.gpus - self.gpus_used) if self.schedulable else 0

    @property
    def is_cloud(self) -> bool:
        return bool(self.instance_id)

    @property
    def idle(self) -> bool:
        return self.gpus_used == 0 and self.running_jobs == 0


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """What a :class:`burst.ports.QueueSource` reports in one observation."""

    pending: tuple[Job, ...]
    running: tuple[Job, ...]
    nodes: tuple[Node, ...]


# --------------------------------------------------------------------------------------------
# Cloud instances and their lifecycle
# --------------------------------------------------------------------------------------------


class Purpose(StrEnum):
    OVERFLOW = "overflow"
    ON_DEMAND = "on-demand"
    GRAND_CHALLENGE = "grand-challenge"


class InstanceState(StrEnum):
    PLANNED = "planned"
    LAUNCHING = "launching"
    RUNNING = "running"
    JOINED = "joined"
    DRAINING = "draining"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    LAUNCH_FAILED = "launch_failed"
    LOST = "lost"


_I = InstanceState

INSTANCE_TRANSITIONS: Mapping[tuple[InstanceState, InstanceState], str] = MappingProxyType(
    {
        (_I.PLANNED, _I.LAUNCHING): "the provider accepted the launch; we hold its cloud id",
        (_I.PLANNED, _I.LAUNCH_FAILED): "the provider refused the launch (capacity, quota, config)",
        (_I.PLANNED, _I.TERMINATED): "intent abandoned before any cloud call; nothing exists",
        (_I.PLANNED, _I.RUNNING): "recovery found the tagged instance already running",
        (_I.PLANNED, _I.TERMINATING): "recovery found a tagged instance nobody needs any more",
        (_I.LAUNCHING, _I.RUNNING): "the cloud reports the instance running",
        (_I.LAUNCHING, _I.JOINED): "the node registered before we observed 'running'",
        (_I.LAUNCHING, _I.TERMINATING): "no longer needed, or it never came up in time",
        (_I.LAUNCHING, _I.LOST): "the cloud no longer lists it (reclaimed or deleted outside)",
        (_I.LAUNCHING, _I.LAUNCH_FAILED): "the cloud reports the launch failed after accepting it",
        (_I.RUNNING, _I.JOINED): "its node appeared in the on-prem scheduler",
        (_I.RUNNING, _I.TERMINATING): "never joined in time, or no longer needed",
        (_I.RUNNING, _I.LOST): "spot reclaim or an outside delete",
        (_I.JOINED, _I.DRAINING): "idle past the timeout, expired, or preempted for a challenge",
        (_I.JOINED, _I.TERMINATING): "node vanished from the scheduler; reclaim the instance",
        (_I.JOINED, _I.LOST): "spot reclaim or an outside delete while serving jobs",
        (_I.DRAINING, _I.JOINED): "work arrived for it again before it emptied; cancel the drain",
        (_I.DRAINING, _I.TERMINATING): "its node is empty; give it back",
        (_I.DRAINING, _I.LOST): "reclaimed while draining",
        (_I.TERMINATING, _I.TERMINATED): "the cloud confirms it is gone (or never existed)",
        (_I.TERMINATING, _I.LOST): "gone before our terminate was confirmed",
        (_I.LOST, _I.TERMINATED): "bookkeeping closed: billing stopped, jobs requeued",
        (_I.LAUNCH_FAILED, _I.TERMINATED): "bookkeeping closed for a failed launch",
    }
)

INSTANCE_TERMINAL = frozenset({_I.TERMINATED})
INSTANCE_LIVE = frozenset({_I.PLANNED, _I.LAUNCHING, _I.RUNNING, _I.JOINED, _I.DRAINING, _I.TERMINATING})
"""States in which a cloud resource may exist and may cost money."""


def check_instance_transition(src: InstanceState, dst: InstanceState) -> str:
    """Return the edge's reason, or raise :class:`InvalidTransition`."""
    try:
        return INSTANCE_TRANSITIONS[(src, dst)]
    except KeyError:
        raise InvalidTransition("instance", src, dst) from None


@dataclass(frozen=True, slots=True)
class Instance:
    """burst's record of one cloud instance, from intent to termination.

    ``id`` is the deterministic intent name: the AWS ``ClientToken``, the Azure VM name and the
    ``burst:id`` tag. ``cloud_id`` is what the provider calls it once created.
    """

    id: str
    cloud: str
    region: str
    zone: str
    instance_type: str
    market: Market
    purpose: Purpose
    gpus: int
    gpu_model: str
    price_per_hour: float
    state: InstanceState = InstanceState.PLANNED
    owner: str = ""
    team: str = ""
    cloud_id: str = ""
    created_at: Timestamp = 0.0
    launched_at: Timestamp | None = None
    joined_at: Timestamp | None = None
    terminated_at: Timestamp | None = None
    idle_since: Timestamp | None = None
    node_name: str = ""
    for_jobs: tuple[str, ...] = ()
    gang_id: str = ""
    request_id: str = ""
    expires_at: Timestamp | None = None
    image: str = ""
    address: str = ""
    last_error: str = ""

    @property
    def offer_key(self) -> str:
        return f"{self.cloud}/{self.region}/{self.zone or '-'}/{self.instance_type}/{self.market}"

    @property
    def live(self) -> bool:
        return self.state in INSTANCE_LIVE

    def billable_seconds(self, now: Timestamp, minimum: float = 60.0) -> float:
        """Seconds billed so far: from the launch request until termination, with a minimum."""
        if self.launched_at is None:
            return 0.0
        end = self.terminated_at if self.terminated_at is not None else now
        return max(minimum, end - self.launched_at)

    def cost(self, now: Timestamp, minimum: float = 60.0) -> float:
        return self.billable_seconds(now, minimum) * self.price_per_hour / 3600.0


class CloudState(StrEnum):
    """A provider's view of an instance, normalised across clouds."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    TERMINATED = "terminated"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CloudInstance:
    """One instance as a :class:`burst.ports.Provider` lists it (by our tags)."""

    cloud: str
    cloud_id: str
    burst_id: str  # the burst:id tag; "" if missing (then it is an orphan by definition)
    region: str
    zone: str
    instance_type: str
    state: CloudState
    tags: Mapping[str, str] = field(default_factory=_no_labels)
    launched_at: Timestamp | None = None
    address: str = ""
    interrupted: bool = False  # spot reclaim / eviction: the work on it must be requeued
    market: Market = Market.ON_DEMAND


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything a provider needs to create one instance. Built by the executor from a Launch."""

    intent_id: str
    offer: Offer
    purpose: Purpose
    tags: Mapping[str, str]
    owner: str = ""
    team: str = ""
    user_data: str = ""
    image: str = ""
    placement_group: str = ""  # gang placement; "" when none
    # The gang this instance is a member of ("" when none): its node registers held (Kubernetes:
    # the burst.dev/gang taint) until every member has joined; see policies/overflow.py.
    gang_id: str = ""
    efa: bool = False
    ssh_public_key: str = ""


TAG_CLUSTER = "burst:cluster"
TAG_ID = "burst:id"
TAG_PURPOSE = "burst:purpose"
TAG_OWNER = "burst:owner"
TAG_TEAM = "burst:team"
TAG_EXPIRES = "burst:expires-at"
# Node label a queue adapter sets on a gang member's node that registered held (Kubernetes: the
# burst.dev/gang taint from the user data); its value is the gang id. Read by the policy.
GANG_HOLD_LABEL = "burst.dev/gang-hold"
REQUIRED_TAGS = (TAG_CLUSTER, TAG_ID, TAG_PURPOSE, TAG_OWNER, TAG_TEAM, TAG_EXPIRES)


def deterministic_id(*parts: str, prefix: str = "b") -> str:
    """A short, stable name from its parts: same inputs, same name, on any machine.

    Used for intent ids, so a controller that re-plans after a crash reaches the same name and
    finds the resource it already asked for instead of launching a second one.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"{prefix}-{digest}"


# --------------------------------------------------------------------------------------------
# On-demand requests and grand challenges (lifecycles; the services come with their issues)
# --------------------------------------------------------------------------------------------


class RequestState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    AUTO_APPROVED = "auto-approved"
    PROVISIONING = "provisioning"
    READY = "ready"
    EXPIRING = "expiring"
    RELEASED = "released"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"


_R = RequestState
REQUEST_TRANSITIONS: Mapping[tuple[RequestState, RequestState], str] = MappingProxyType(
    {
        (_R.REQUESTED, _R.APPROVED): "an admin pressed Approve",
        (_R.REQUESTED, _R.AUTO_APPROVED): "within the user's and team's quota and the budget",
        (_R.REQUESTED, _R.REJECTED): "an admin pressed Reject, or the request became invalid",
        (_R.REQUESTED, _R.RELEASED): "the requester withdrew it before approval",
        (_R.APPROVED, _R.PROVISIONING): "the controller wrote the launch intent",
        (_R.AUTO_APPROVED, _R.PROVISIONING): "the controller wrote the launch intent",
        (_R.AUTO_APPROVED, _R.REQUESTED): "the quota no longer allows it (checked before launch): an admin decides",
        (_R.APPROVED, _R.RELEASED): "released before the controller launched anything",
        (_R.AUTO_APPROVED, _R.RELEASED): "released before the controller launched anything",
        (_R.PROVISIONING, _R.READY): "the instance is running and reachable",
        (_R.PROVISIONING, _R.FAILED): "every offer failed, or the budget ran out",
        (_R.PROVISIONING, _R.RELEASED): "released while still provisioning; instance torn down",
        (_R.READY, _R.EXPIRING): "the reminder went out before the time limit",
        (_R.READY, _R.RELEASED): "the requester released it",
        (_R.READY, _R.FAILED): "the instance was lost (spot reclaim, outside delete)",
        (_R.EXPIRING, _R.READY): "extended before the limit",
        (_R.EXPIRING, _R.RELEASED): "released during the final window",
        (_R.EXPIRING, _R.EXPIRED): "the time limit passed; the instance is terminated",
        (_R.EXPIRING, _R.FAILED): "the instance was lost during the final window",
    }
)
REQUEST_TERMINAL = frozenset({_R.RELEASED, _R.REJECTED, _R.FAILED, _R.EXPIRED})


def check_request_transition(src: RequestState, dst: RequestState) -> str:
    try:
        return REQUEST_TRANSITIONS[(src, dst)]
    except KeyError:
        raise InvalidTransition("request", src, dst) from None


class ChallengeState(StrEnum):
    """One phase of a grand challenge's timeline (issue 10), in order."""

    SCHEDULED = "scheduled"  # stored: start, duration, nodes, job spec, owner
    NOTIFIED = "notified"  # at least one notice (T-24h, T-1h) went out
    DRAINING = "draining"  # reservation / cordon on the challenge's nodes; no new long job lands
    PREEMPTING = "preempting"  # preempted set recorded, checkpoint signals sent, grace running
    RUNNING = "running"  # preempted jobs held, challenge job submitted into the reservation
    RESTORING = "restoring"  # giving every preempted job back and lifting the reservation
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


_C = ChallengeState
CHALLENGE_TRANSITIONS: Mapping[tuple[ChallengeState, ChallengeState], str] = MappingProxyType(
    {
        (_C.SCHEDULED, _C.NOTIFIED): "a notice window opened (T-24h or T-1h); owners and the channel were told",
        (_C.SCHEDULED, _C.CANCELLED): "an admin cancelled it before any notice; nothing on the cluster to undo",
        (_C.NOTIFIED, _C.DRAINING): "the drain window opened; the challenge's nodes are reserved/cordoned",
        (_C.NOTIFIED, _C.CANCELLED): "an admin cancelled it after the notice, before draining; nothing to undo",
        (_C.DRAINING, _C.PREEMPTING): "start reached; preempted set recorded, then checkpoint signals sent",
        (_C.DRAINING, _C.RESTORING): "cancelled or failed while draining; lift the reservation",
        (_C.PREEMPTING, _C.RUNNING): "grace over, preempted jobs held, challenge job submitted",
        (_C.PREEMPTING, _C.RESTORING): "cancelled, or the challenge job could not be submitted; give jobs back",
        (_C.RUNNING, _C.RESTORING): "the challenge job ended, its time is up (cancelled), or an admin cancelled",
        (_C.RESTORING, _C.DONE): "every preempted job is pending or running again; reservation gone",
        (_C.RESTORING, _C.CANCELLED): "restored everything after a cancel past the drain",
        (_C.RESTORING, _C.FAILED): "restored everything after the challenge failed (its job never started)",
    }
)
CHALLENGE_TERMINAL = frozenset({_C.DONE, _C.CANCELLED, _C.FAILED})
CHALLENGE_ACTIVE = frozenset(set(ChallengeState) - CHALLENGE_TERMINAL)
"""Phases in which a challenge holds (or will hold) its time slot and may touch the cluster."""


def check_challenge_transition(src: ChallengeState, dst: ChallengeState) -> str:
    try:
        return CHALLENGE_TRANSITIONS[(src, dst)]
    except KeyError:
        raise InvalidTransition("challenge", src, dst) from None


@dataclass(frozen=True, slots=True)
class OnDemandRequest:
    id: str
    user: str
    team: str
    gpus: int
    gpu_model: str
    hours: float
    state: RequestState = RequestState.REQUESTED
    cloud: str = ""
    region: str = ""
    spot: bool = False
    note: str = ""
    created_at: Timestamp = 0.0
    expires_at: Timestamp | None = None
    instance_id: str = ""
    approver: str = ""


class ChallengeJobKind(StrEnum):
    SLURM = "slurm"  # a Slurm batch script
    KUBERNETES = "kubernetes"  # a Kubernetes batch/v1 Job manifest


class ChallengeEnding(StrEnum):
    """Where RESTORING leads once everything is given back."""

    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PreemptedJob:
    """One job a grand challenge preempted, as recorded *before* the first checkpoint signal.

    ``priority`` and ``order`` (0-based rank in the queue at the start: by priority, then submit
    time) are what restore gives back. ``released_at`` is written just before the release call (an
    intent: a job seen still held afterwards is released again); ``restored`` is set once the
    queue shows it pending or running again (or finished).
    """

    job_id: str
    user: str
    gpus: int
    priority: int
    order: int
    may_burst: bool = False
    released_at: Timestamp | None = None
    restored: bool = False

    @property
    def released(self) -> bool:
        return self.released_at is not None


@dataclass(frozen=True, slots=True)
class GrandChallenge:
    """A grand challenge and everything its runner needs to resume after a restart.

    ``nodes == 0`` means the whole on-prem cluster. ``node_names`` and ``reservation`` are fixed
    when draining starts; ``reserved`` says the reservation (or cordon) is believed in place.
    ``phases`` holds ``(state, entered_at)`` pairs in order; ``notices`` the notice keys sent
    (``"T-86400"``...). ``ending`` is where RESTORING leads (set by a cancel or a failure).
    """

    id: str
    name: str
    start_at: Timestamp
    duration_s: float
    command: str
    created_by: str
    state: ChallengeState = ChallengeState.SCHEDULED
    note: str = ""
    preempted_jobs: tuple[PreemptedJob, ...] = ()
    nodes: int = 0
    job_kind: ChallengeJobKind = ChallengeJobKind.SLURM
    job_path: str = ""
    job_text: str = ""
    owner: str = ""
    challenge_job_id: str = ""
    reservation: str = ""
    node_names: tuple[str, ...] = ()
    reserved: bool = False
    notices: tuple[str, ...] = ()
    phases: tuple[tuple[str, Timestamp], ...] = ()
    burst_preempted: bool = False
    ending: ChallengeEnding = ChallengeEnding.DONE
    last_error: str = ""

    @property
    def end_at(self) -> Timestamp:
        return self.start_at + self.duration_s

    def entered_at(self, state: ChallengeState) -> Timestamp | None:
        """When the challenge last entered ``state``; None if it never did."""
        for name, at in reversed(self.phases):
            if name == state:
                return at
        return None

    def preempted(self, job_id: str) -> PreemptedJob | None:
        for p in self.preempted_jobs:
            if p.job_id == job_id:
                return p
        return None


# --------------------------------------------------------------------------------------------
# Plans: what a policy decides, as data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Launch:
    """Create one instance for ``offer``. ``intent_id`` is deterministic (see deterministic_id)."""

    intent_id: str
    offer: Offer
    purpose: Purpose
    reason: str
    for_jobs: tuple[str, ...] = ()
    owner: str = ""
    team: str = ""
    gang_id: str = ""
    image: str = ""
    request_id: str = ""
    expires_at: Timestamp | None = None


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop new work landing on the instance's node (cordon/drain)."""

    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Undrain:
    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    """Lift the hold a gang member's node registered with (see GANG_HOLD_LABEL): the whole gang
    has joined, so the scheduler may place it. The instance's state does not change."""

    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Terminate:
    """Give the instance back. Idempotent: terminating what is already gone is success.

    ``cool_offer``: the instance's offer is at fault (it never joined), so the offer cools down
    like after a capacity error, instead of being relaunched straight into the same failure.
    """

    instance_id: str
    reason: str
    cool_offer: bool = False


@dataclass(frozen=True, slots=True)
class Mirror:
    """Copy ``image`` into the registry of ``cloud``/``region`` before instances there pull it."""

    image: str
    cloud: str
    region: str
    reason: str


# ---- grand challenges: what policies/grand_challenge.py decides, burst/grand_challenge.py does ----


@dataclass(frozen=True, slots=True)
class RecordNotices:
    """Store that these notice keys went out (written before the Notify actions that follow it,
    so a restart never repeats a notice)."""

    challenge_id: str
    notices: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Reserve:
    """Reserve ``nodes`` (on-prem names, never burst nodes) from ``start`` for ``duration_s``
    under the challenge's reservation name (Slurm reservation with IGNORE_JOBS; Kubernetes
    cordon). Idempotent on the name."""

    challenge_id: str
    name: str
    nodes: tuple[str, ...]
    start: Timestamp
    duration_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Unreserve:
    """Delete the reservation / uncordon. A reservation already gone is success."""

    challenge_id: str
    name: str
    nodes: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RecordPreempted:
    """Write the exact preempted set (priority and queue order) and enter PREEMPTING, in one
    store transaction, before any checkpoint signal."""

    challenge_id: str
    jobs: tuple[PreemptedJob, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Ask the jobs to checkpoint (Slurm USR1, Kubernetes annotation). Sent at most once."""

    challenge_id: str
    job_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Stop the jobs and keep them queued, not schedulable (requeue-hold / suspend)."""

    challenge_id: str
    job_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ReleaseJobs:
    """Give held jobs back, in this order, each with the explicit priority beside it (so they run
    before work submitted during the challenge). ``released_at`` is recorded before the call."""

    challenge_id: str
    job_ids: tuple[str, ...]
    priorities: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ConfirmRestored:
    """The queue shows these released jobs pending or running again (or finished)."""

    challenge_id: str
    job_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class SubmitChallenge:
    """Submit the challenge job into the reservation on ``nodes``; on success the runner records
    its id and enters RUNNING, on a refusal RESTORING (ending FAILED)."""

    challenge_id: str
    nodes: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class CancelChallengeJob:
    challenge_id: str
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AdvanceChallenge:
    """A table-checked phase change; ``ending`` (when set) records where RESTORING will lead."""

    challenge_id: str
    to: ChallengeState
    reason: str
    ending: ChallengeEnding | None = None




@dataclass(frozen=True, slots=True)
class Notify:
    audience: str  # a user id, "admins", or "all"
    text: str
    reason: str


Action: TypeAlias = Launch | Drain | Undrain | Release | Terminate | Mirror | Notify

ChallengeAction: TypeAlias = (
    Notify
    | RecordNotices
    | Reserve
    | Unreserve
    | RecordPreempted
    | Checkpoint
    | Hold
    | ReleaseJobs
    | ConfirmRestored
    | SubmitChallenge
    | CancelChallengeJob
    | AdvanceChallenge
)


@dataclass(frozen=True, slots=True)
class Plan:
    """A policy's answer. ``wake_at`` is the earliest time at which the same snapshot would lead to a
    different plan (a wait threshold or an idle timeout falling due); the simulator uses it to skip
    idle time, the daemon may ignore it."""

    actions: tuple[Action, ...] = ()
    wake_at: Timestamp | None = None
    notes: tuple[str, ...] = field(default=())

    def of(self, kind: type) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kind)]
