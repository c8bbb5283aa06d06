"""Inputs of the pure policies: the snapshot and the policy configuration.

A :class:`Snapshot` is everything a decision may know, frozen at one instant ``now``. It holds
only what a real queue and a real cloud show: pending jobs with their submit time and size,
running jobs with their *elapsed* time (never their future duration), nodes with GPU use, the
instances burst owns, offers and backoffs. Policies never read a clock, a database or the
network; the controller builds the snapshot and carries out the Plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from burst.domain import Instance, Job, Node, Offer, OnDemandRequest, Timestamp
from policies.fairness import FairnessConfig
from policies.pending_index import PendingIndex
from policies.remaining import DurationModel
from policies.spot import ReclaimCostModel, ReclaimHistory

if TYPE_CHECKING:
    from policies.tick_memo import TickMemo


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SpendView:
    """Money already spent or committed, and the caps (0 = no cap)."""

    month_usd: float = 0.0
    day_usd: float = 0.0
    month_cap_usd: float = 0.0
    day_cap_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: Timestamp
    cluster: str
    pending: tuple[Job, ...]
    running: tuple[Job, ...]
    nodes: tuple[Node, ...]
    instances: tuple[Instance, ...]  # burst's live instances (not TERMINATED)
    offers: tuple[Offer, ...]  # eligible offers, already filtered by configuration
    backoff_until: Mapping[str, float] = field(default_factory=_empty)  # offer key -> until
    disabled_providers: frozenset[str] = frozenset()
    spend: SpendView = SpendView()
    mirrored: frozenset[tuple[str, str, str]] = frozenset()  # (image, cloud, region) present
    boot_estimate_s: float | None = None  # learnt launch-to-joined time; None: no history yet
    requests: tuple[OnDemandRequest, ...] = ()  # active on-demand requests (policies/requests.py)
    reclaims: Mapping[str, ReclaimHistory] = field(default_factory=dict)  # spot offer key -> history
    # burst GPU-hours of *ended* overflow instances per team within the fairness window (the
    # ledger side of fair share; live instances are in ``instances``). Empty without teams.
    team_gpu_hours: Mapping[str, float] = field(default_factory=_empty)
    # Run times of finished jobs, learnt online by the controller (burst/durations.py); None:
    # no predictor, on-prem starts are not predicted (policies/forecast.py).
    durations: DurationModel | None = None
    # The pending queue's order and may-burst counts, kept by the controller from a tick that saw
    # the same pending tuple (policies/pending_index.py); None: the overflow pass computes them.
    pending_index: PendingIndex | None = field(default=None, compare=False)
    # What the policies keep from the last tick (pools, scale-in, nodes by instance), held by the
    # controller (policies/tick_memo.py); None: everything is computed from scratch.
    memo: TickMemo | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class OverflowConfig:
    """When pending work goes to the cloud.

    Admins set a **wait target**: no job that may burst should wait longer than this. burst
    launches for a job that no existing or incoming capacity will take once it has waited

        threshold = wait_target - boot estimate - one tick - safety margin

    so that the instance has booted and joined just before the target. The boot estimate is
    learnt from recent launches (launch request to node joined; ``Snapshot.boot_estimate_s``)
    and falls back to ``default_boot_s``. Waiting until then, rather than bursting at once,
    is what saves money: most jobs start on-prem before the threshold. ``wait_threshold_s``
    overrides the computed threshold (the greedy reference uses 30 s).
    """

    enabled: bool = True
    wait_target_s: float = 30 * 60.0
    wait_threshold_s: float | None = None
    gang_wait_threshold_s: float | None = None  # None: same as single-node jobs
    safety_margin_s: float = 60.0
    default_boot_s: float = 240.0
    max_launches_per_tick: int = 200
    max_instances: int = 1000
    max_cloud_gpus: int = 8000
    # Predict on-prem starts from the running jobs' elapsed times and the learnt run-time
    # distribution (policies/forecast.py): a job past its threshold does not burst while the
    # on-prem GPUs it needs are predicted to free up in time for it to start within the wait
    # target, each running job ending by the ``start_confidence`` quantile of its remaining
    # time (0.5: its median). A job is held only while a burst on the next tick would still
    # join within the target, so a forecast that fails costs one tick of wait, never the target.
    # Off by default: measured on every ITP cluster and on jittered itp-c04 it moves cost by
    # -0.15%..+0.07% (noise), because under that bound a job can be held about one tick only
    # (threshold margin minus a tick); holding longer saved 1.4% at 80 nodes but let a job wait
    # 33 min on cluster01. See policies/forecast.py.
    predict_starts: bool = False
    start_confidence: float = 0.5


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """Which offers, and how small jobs share instances.

    ``pack``: place several small jobs on one larger instance when that is cheaper than one right-
    sized instance per job by at least ``pack_min_saving`` (a fraction). ``gang_gpus_per_node``
    is the GPUs each instance of a multi-node job must have (whole 8-GPU nodes by default).
    """

    pack: bool = True
    # Measured on itp-c04: sharing a p4d (10% cheaper per GPU than 1-GPU p3.2xlarge) cost 0.5-1.2%
    # MORE overall, because packed jobs end at different times and strand paid GPUs. Packing
    # therefore needs a clear margin over right-sizing before it is chosen.
    pack_min_saving: float = 0.15
    gang_gpus_per_node: int = 8
    allow_spot: bool = False
    prefer_spot_discount: float = 0.3  # spot must be this much cheaper to be chosen first
    # Rank spot offers by price x reclaim factor from their observed reclaims (policies/spot.py)
    # instead of the flat prefer_spot_discount. Off by default: existing spot choices unchanged.
    weigh_reclaims: bool = False
    reclaim_cost: ReclaimCostModel = ReclaimCostModel()


@dataclass(frozen=True, slots=True)
class ScaleInConfig:
    idle_timeout_s: float = 60.0  # per-second billing: idle capacity is pure waste (B1: 60 s beat 120 s)
    join_timeout_s: float = 20 * 60.0  # an instance that has not joined by then is given back
    cancel_unneeded_launches: bool = True  # terminate booting instances no pending job needs
    drain_grace_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Reserve per launch: the money a new instance commits before burst can notice it is idle."""

    reserve_hours_per_launch: float = 0.25


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    name: str = "burst"
    overflow: OverflowConfig = OverflowConfig()
    selection: SelectionConfig = SelectionConfig()
    scale_in: ScaleInConfig = ScaleInConfig()
    budget: BudgetConfig = BudgetConfig()
    fairness: FairnessConfig = FairnessConfig()  # no teams: oldest-first, as before
    tick_interval_s: float = 30.0  # how often the daemon ticks; used for wake-ups only
