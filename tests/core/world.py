"""A small world for controller tests: our own fakes only (SimCluster, SimProvider, stores).

The world moves on a virtual clock: ``step(t)`` applies job completions, instance boots and
reclaims due by ``t`` and lets the simulated scheduler place work; ``tick(t)`` does that, then runs
the real ``Controller.tick`` and lets the scheduler use whatever the tick changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from burst.controller import Controller, TickResult
from burst.domain import TAG_CLUSTER, TAG_ID, LaunchSpec, Market, Offer, Purpose
from burst.ports import Store
from burst.sim.clock import VirtualClock
from burst.sim.cloud import SimInstance, SimProvider
from burst.sim.cluster import SimCluster, SimJob
from burst.sim.trace import TraceJob
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from policies.model import OverflowConfig, ScaleInConfig, SelectionConfig

T0 = 1_700_000_000.0
CLUSTER = "test"
TICK = 30.0


def offer(cloud: str, region: str, zone: str, price: float, market: Market = Market.ON_DEMAND, itype: str = "") -> Offer:
    return Offer(cloud, itype or ("p4d.24xlarge" if cloud == "aws" else "Standard_ND96asr_v4"), region, zone, "A100", 8, 40.0, price, market)


AWS_AZ1 = offer("aws", "us-east-1", "use1-az1", 32.0)
AWS_AZ2 = offer("aws", "us-east-1", "use1-az2", 32.5)
AZURE = offer("azure", "eastus", "", 34.0)
OFFERS = (AWS_AZ1, AWS_AZ2, AZURE)

POLICY = PolicyConfig(
    name="test",
    overflow=OverflowConfig(wait_threshold_s=60.0),
    selection=SelectionConfig(),
    scale_in=ScaleInConfig(idle_timeout_s=120.0, join_timeout_s=1200.0),
    tick_interval_s=TICK,
)


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def notify(self, audience: str, text: str) -> None:
        self.sent.append((audience, text))


@dataclass
class Started:
    job: str
    at: float
    cloud: bool
    nodes: tuple[str, ...]


@dataclass
class World:
    nodes: int = 1
    offers: Sequence[Offer] = OFFERS
    store: Store = field(default_factory=MemoryStore)
    policy: PolicyConfig = POLICY
    orphan_grace_s: float = 300.0
    provider_kw: dict = field(default_factory=dict)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        self.clock = VirtualClock(T0)
        self.started: list[Started] = []
        self.finished: dict[str, float] = {}
        self.cluster = SimCluster(self.nodes, 8, "A100", on_start=self._on_start, on_finish=self._on_finish)
        self.providers = {
            c: SimProvider(c, CLUSTER, self.clock, on_ready=self._ready, on_gone=self._gone, **self.provider_kw)
            for c in ("aws", "azure")
        }
        self.notifier = RecordingNotifier()
        self.controller = Controller(
            cluster=CLUSTER,
            queue=self.cluster,
            providers=self.providers,
            store=self.store,
            offers=self.offers,
            policy=self.policy,
            notifier=self.notifier,
            orphan_grace_s=self.orphan_grace_s,
        )
        self.results: list[TickResult] = []

    # ---- world hooks -------------------------------------------------------------------------
    def _on_start(self, sj: SimJob, now: float) -> None:
        names = tuple(self.cluster.nodes[i].name for i in sj.nodes)
        self.started.append(Started(sj.trace.id, now, sj.cloud, names))

    def _on_finish(self, sj: SimJob, now: float) -> None:
        self.finished[sj.trace.id] = now

    def _ready(self, inst: SimInstance, now: float) -> None:
        o = inst.offer
        self.cluster.add_cloud_node(f"burst-{inst.burst_id}", o.gpu_count, o.gpu_model, f"{o.cloud}/{o.region}", inst.burst_id)

    def _gone(self, inst: SimInstance, now: float) -> None:
        self.cluster.remove_node(f"burst-{inst.burst_id}")

    # ---- driving -----------------------------------------------------------------------------
    def submit(self, jid: str, gpus: int, duration: float, at: float | None = None, *, may_burst: bool = True) -> None:
        nodes = max(1, -(-gpus // 8))
        tj = TraceJob(jid, 0.0, duration, gpus, nodes=nodes, per_node=gpus if nodes == 1 else 8, may_burst=may_burst)
        self.cluster.submit(tj, self.clock.now() if at is None else at)
        self.cluster.schedule(self.clock.now())

    def step(self, t: float) -> None:
        self.clock.set(t)
        self.cluster.complete_until(t)
        for p in self.providers.values():
            p.advance(t)
        self.cluster.schedule(t)

    def tick(self, t: float | None = None) -> TickResult:
        t = self.clock.now() if t is None else t
        self.step(t)
        res = self.controller.tick(t)
        self.cluster.schedule(t)
        self.results.append(res)
        return res

    def run(self, until: float, every: float = TICK) -> None:
        """Tick on the grid from the current time (exclusive) to ``until`` (inclusive)."""
        t = self.clock.now()
        while t + every <= until + 1e-9:
            t += every
            self.tick(t)

    def now(self) -> float:
        return self.clock.now()

    # ---- helpers -----------------------------------------------------------------------------
    def launch_directly(self, cloud: str, intent_id: str, o: Offer | None = None) -> str:
        """Create a tagged cloud instance behind burst's back (a crash after the cloud call)."""
        o = o or next(x for x in self.offers if x.cloud == cloud)
        spec = LaunchSpec(intent_id=intent_id, offer=o, purpose=Purpose.OVERFLOW, tags={TAG_CLUSTER: CLUSTER, TAG_ID: intent_id})
        return self.providers[cloud].launch(spec).cloud_id

    def launched(self) -> int:
        return sum(p.launched for p in self.providers.values())

    def billed_usd(self) -> float:
        return sum(p.cost(self.now()) for p in self.providers.values())

    def actions(self, subject: str) -> list[str]:
        """Audited state changes of ``subject``, oldest first."""
        return [r.action for r in reversed(self.store.audit_rows(subject=subject, limit=1000))]
