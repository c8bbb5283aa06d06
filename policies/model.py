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

from burst.domain import Instance, Job, Node, Offer, Timestamp


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


@dataclass(frozen=True, slots=True)
class OverflowConfig:
    """When pending work goes to the cloud.

    ``wait_threshold_s``: a job that may burst and cannot be placed on any existing or incoming
    capacity bursts once it has waited this long. The default leaves room under a 30-minute wait
    target for the instance to boot (about 4 minutes) and a tick or two of lag.
    """

    enabled: bool = True
    wait_threshold_s: float = 20 * 60.0
    gang_wait_threshold_s: float | None = None  # None: same as wait_threshold_s
    max_launches_per_tick: int = 200
    max_instances: int = 1000
    max_cloud_gpus: int = 8000


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """Which offers, and how small jobs share instances.

    ``pack``: place several small jobs on one larger instance when that is cheaper than one right-
    sized instance per job by at least ``pack_min_saving`` (a fraction). ``gang_gpus_per_node``
    is the GPUs each instance of a multi-node job must have (whole 8-GPU nodes by default).
    """

    pack: bool = True
    pack_min_saving: float = 0.0
    gang_gpus_per_node: int = 8
    allow_spot: bool = False
    prefer_spot_discount: float = 0.3  # spot must be this much cheaper to be chosen first


@dataclass(frozen=True, slots=True)
class ScaleInConfig:
    idle_timeout_s: float = 4 * 60.0
    join_timeout_s: float = 20 * 60.0  # an instance that has not joined by then is given back
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
    tick_interval_s: float = 30.0  # how often the daemon ticks; used for wake-ups only
