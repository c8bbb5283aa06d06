"""The simulator: replays a trace through the real :class:`burst.controller.Controller`.

Discrete events (arrivals, completions, boots, reclaims) move a virtual clock. The controller
ticks on the daemon's grid (every ``tick_s`` seconds, like the APScheduler interval job) but
only on grid points where something changed or the last Plan asked to be woken (``wake_at``);
on the other grid points the daemon's tick would find nothing to do. The simulated cluster
schedules continuously, as a real scheduler does between controller ticks.

Time zero of the ITP traces is taken as 2021-03-04T00:00Z (the start of their collection), so
day and month budgets fall on real calendar boundaries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from burst.catalog import Catalog, OfferFilter
from burst.controller import BudgetCaps, Controller
from burst.domain import Market, Offer
from burst.sim.clock import VirtualClock
from burst.sim.cloud import SimInstance, SimProvider
from burst.sim.cluster import SimCluster, SimJob
from burst.sim.trace import TraceJob
from burst.store.base import Store
from burst.store.memory import MemoryStore
from policies import PolicyConfig

TRACE_EPOCH = 1614816000.0  # 2021-03-04T00:00:00Z

B1_REGIONS = ("us-east-1", "us-west-2", "eastus", "westus2")
B1_ACCELERATORS = ("V100", "V100-32GB", "A100", "A100-80GB", "H100")


def b1_offers(catalog: Catalog | None = None, *, spot: bool = False) -> list[Offer]:
    """The cloud of BENCHMARKS.md B1: 2 AWS + 2 Azure regions, V100..H100, on-demand (+spot)."""
    cat = catalog or Catalog.bundled()
    markets = (Market.ON_DEMAND, Market.SPOT) if spot else (Market.ON_DEMAND,)
    return cat.offers(OfferFilter(clouds=("aws", "azure"), regions=B1_REGIONS, accelerators=B1_ACCELERATORS, markets=markets))


@dataclass(frozen=True, slots=True)
class SimSettings:
    nodes: int = 80
    gpus_per_node: int = 8
    gpu_model: str = "A100"
    tick_s: float = 30.0
    boot_s: float = 240.0
    billing_minimum_s: float = 60.0
    capacity_error_rate: float = 0.0
    transient_error_rate: float = 0.0
    spot_interrupt_mean_s: float | None = None
    seed: int = 0
    cluster: str = "sim"
    sample_every_s: float = 600.0
    month_cap_usd: float = 0.0
    day_cap_usd: float = 0.0


@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    onprem_used: list[int] = field(default_factory=list)
    cloud_used: list[int] = field(default_factory=list)
    cloud_provisioned: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    spend: list[float] = field(default_factory=list)


@dataclass
class SimResult:
    policy: str
    jobs: int
    waits_s: list[float]
    cloud_usd: float
    gpu_hours_paid: float
    gpu_hours_used: float
    instances: int
    wall_s: float
    sim_s: float
    ticks: int
    capacity_errors: int = 0
    interruptions: int = 0
    requeues: int = 0
    ledger_usd: float = 0.0
    unfinished: int = 0
    series: Series = field(default_factory=Series)
    plans: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)

    def figures(self) -> dict[str, float | int | str]:
        w = sorted(self.waits_s)

        def pct(p: float) -> float:
            if not w:
                return 0.0
            k = min(len(w) - 1, max(0, math.ceil(p / 100.0 * len(w)) - 1))
            return w[k] / 60.0

        return {
            "policy": self.policy,
            "jobs": self.jobs,
            "mean_wait_min": (sum(w) / len(w) / 60.0) if w else 0.0,
            "p50_wait_min": pct(50),
            "p95_wait_min": pct(95),
            "p99_wait_min": pct(99),
            "max_wait_min": (w[-1] / 60.0) if w else 0.0,
            "cloud_usd": self.cloud_usd,
            "gpu_hours_paid": self.gpu_hours_paid,
            "gpu_hours_used": self.gpu_hours_used,
            "utilisation": (self.gpu_hours_used / self.gpu_hours_paid) if self.gpu_hours_paid else 0.0,
            "instances": self.instances,
            "wall_s": self.wall_s,
            "sim_days": self.sim_s / 86400.0,
            "speedup": (self.sim_s / self.wall_s) if self.wall_s else 0.0,
            "ticks": self.ticks,
            "capacity_errors": self.capacity_errors,
            "interruptions": self.interruptions,
            "requeues": self.requeues,
            "unfinished": self.unfinished,
        }


Progress = Callable[[float], None]  # fraction of the trace's span done


class Simulation:
    """One policy over one trace. ``run()`` once."""

    def __init__(
        self,
        trace: Sequence[TraceJob],
        policy: PolicyConfig,
        *,
        settings: SimSettings = SimSettings(),
        offers: Sequence[Offer] | None = None,
        store: Store | None = None,
        record_plans: bool = False,
    ) -> None:
        if not trace:
            raise ValueError("empty trace")
        self.trace = list(trace)
        self.policy = policy
        self.s = settings
        self.offers = list(offers) if offers is not None else b1_offers()
        self.clock = VirtualClock(TRACE_EPOCH + self.trace[0].submit)
        self.store: Store = store if store is not None else MemoryStore(audit_limit=10_000)
        self.record_plans = record_plans
        self.waits: list[float] = []
        self.cloud_gpu_s_used = 0.0
        self.cluster = SimCluster(settings.nodes, settings.gpus_per_node, settings.gpu_model, on_start=self._on_start, on_finish=self._on_finish)
        self.providers: dict[str, SimProvider] = {}
        for i, cloud in enumerate(sorted({o.cloud for o in self.offers})):
            self.providers[cloud] = SimProvider(
                cloud,
                settings.cluster,
                self.clock,
                boot_s=settings.boot_s,
                billing_minimum_s=settings.billing_minimum_s,
                capacity_error_rate=settings.capacity_error_rate,
                transient_error_rate=settings.transient_error_rate,
                spot_interrupt_mean_s=settings.spot_interrupt_mean_s,
                seed=settings.seed * 7919 + i,
                on_ready=self._on_ready,
                on_gone=self._on_gone,
            )
        self.controller = Controller(
            cluster=settings.cluster,
            queue=self.cluster,
            providers=self.providers,
            store=self.store,
            offers=self.offers,
            policy=policy,
            caps=BudgetCaps(settings.month_cap_usd, settings.day_cap_usd),
        )
        self.series = Series()
        self._i = 0  # next trace job to submit
        self._plist = list(self.providers.values())
        self.clock_origin = self.clock.now()
        self.ticks = 0
        self._cloud_events = 0
        self.plans: list[tuple[float, tuple[str, ...]]] = []

    # ---- world hooks -------------------------------------------------------------------------
    def _on_start(self, sj: SimJob, now: float) -> None:
        # A trace job's wait ends at its first start: not again after a requeue or a grand
        # challenge's hold, and a challenge job is not part of the trace.
        if sj.requeues == 0 and sj.holds == 0 and not sj.reservation:
            self.waits.append(now - sj.submit)

    def _on_finish(self, sj: SimJob, now: float) -> None:
        if sj.cloud and sj.start is not None:
            self.cloud_gpu_s_used += (now - sj.start) * sj.trace.gpus

    def _on_ready(self, inst: SimInstance, now: float) -> None:
        self.cluster.add_cloud_node(
            node_name_for(inst.burst_id),
            inst.offer.gpu_count,
            inst.offer.gpu_model,
            f"{inst.offer.cloud}/{inst.offer.region}",
            inst.burst_id,
        )

    def _on_gone(self, inst: SimInstance, now: float) -> None:
        # A terminated or reclaimed instance's node leaves; work still on it is requeued.
        name = node_name_for(inst.burst_id)
        node = self.cluster._node(name)
        if node is not None:
            for jid in list(node.jobs):
                sj = self.cluster._running.get(jid)
                if sj is not None and sj.start is not None and sj.cloud:
                    self.cloud_gpu_s_used += (now - sj.start) * sj.trace.gpus
            self.cluster.remove_node(name)

    # ---- loop ------------------------------------------------------------------------------------
    def _grid(self, t: float) -> float:
        base = self.clock_origin
        return base + math.ceil((t - base) / self.s.tick_s - 1e-9) * self.s.tick_s

    def _next_world_event(self) -> float | None:
        cands: list[float] = []
        if self._i < len(self.trace):
            cands.append(TRACE_EPOCH + self.trace[self._i].submit)
        c = self.cluster.next_completion()
        if c is not None:
            cands.append(c)
        for p in self._plist:
            e = p.next_event()
            if e is not None:
                cands.append(e)
        return min(cands) if cands else None

    def _world_at(self, t: float) -> None:
        """Apply every world event due at ``t``: completions, boots/reclaims, arrivals; schedule."""
        self.clock.set(max(t, self.clock.now()))
        t = self.clock.now()
        self.cluster.complete_until(t)
        for p in self._plist:
            self._cloud_events += p.advance(t)
        trace = self.trace
        while self._i < len(trace) and TRACE_EPOCH + trace[self._i].submit <= t:
            self.cluster.submit(trace[self._i], TRACE_EPOCH + trace[self._i].submit)
            self._i += 1
        self.cluster.schedule(t)

    def advance_to(self, target: float) -> None:
        """Live mode (``burst run`` on the simulated queue): move the world, not the controller."""
        while True:
            t = self._next_world_event()
            if t is None or t > target:
                break
            self._world_at(t)
        if target > self.clock.now():
            self._world_at(target)

    def after_tick(self, now: float) -> None:
        """What the simulated scheduler does right after a controller tick: start what fits (an
        Undrain frees capacity at once). ``run()`` and the live daemon both call it."""
        self.cluster.schedule(now)

    def run(self, progress: Progress | None = None) -> SimResult:
        wall0 = time.perf_counter()
        trace = self.trace
        n = len(trace)
        start = self.clock_origin
        span = max(1.0, trace[-1].submit - trace[0].submit)
        next_tick: float | None = None
        last_version = -1
        next_sample = start
        cluster = self.cluster
        last_progress = 0.0
        while True:
            t_world = self._next_world_event()
            if t_world is None and next_tick is None:
                break
            if next_tick is None or (t_world is not None and t_world < next_tick):
                assert t_world is not None
                t = t_world
            else:
                t = next_tick
            self._world_at(t)
            t = self.clock.now()
            if cluster.version != last_version or self._cloud_events:
                # Cloud events count too: a reclaim of an instance that has not joined yet
                # changes no node, but the daemon's next tick would see it and replace it.
                self._cloud_events = 0
                g = self._grid(t)
                next_tick = g if next_tick is None else min(next_tick, g)
            if next_tick is not None and t >= next_tick:
                res = self.controller.tick(t)
                self.ticks += 1
                self.after_tick(t)
                last_version = cluster.version
                next_tick = None
                if res.wake_at is not None:  # the plan's wake_at or a controller deadline
                    next_tick = self._grid(max(res.wake_at, t + self.s.tick_s))
                if res.plan.actions:
                    # Acting changed the store and the clouds (e.g. a Terminate of in-flight
                    # capacity uncovers a job) in ways the cluster's version does not show:
                    # the daemon's next tick would see that, so tick then too.
                    g = self._grid(t + self.s.tick_s)
                    next_tick = g if next_tick is None else min(next_tick, g)
                if self.record_plans and res.plan.actions:
                    self.plans.append((t, tuple(_describe(a) for a in res.plan.actions)))
                if res.skipped:
                    next_tick = self._grid(t + self.s.tick_s)
            if t >= next_sample:
                self._sample(t)
                next_sample = t + self.s.sample_every_s
            if progress is not None and self._i < n:
                frac = (trace[self._i].submit - trace[0].submit) / span
                if frac - last_progress >= 0.01:
                    last_progress = frac
                    progress(frac)
        end = self.clock.now()
        self._sample(end)
        if progress is not None:
            progress(1.0)
        wall = time.perf_counter() - wall0
        providers = self._plist
        cost = sum(p.cost(end) for p in providers)
        paid = sum(p.gpu_hours_paid(end) for p in providers)
        ledger = self.store.spend(since=0.0, now=end)
        return SimResult(
            policy=self.policy.name,
            jobs=n,
            waits_s=list(self.waits),
            cloud_usd=cost,
            gpu_hours_paid=paid,
            gpu_hours_used=self.cloud_gpu_s_used / 3600.0,
            instances=sum(p.launched for p in providers),
            wall_s=wall,
            sim_s=end - start,
            ticks=self.ticks,
            capacity_errors=sum(p.capacity_errors for p in providers),
            interruptions=sum(p.interruptions for p in providers),
            requeues=self.cluster.requeues,
            ledger_usd=ledger,
            unfinished=cluster.pending_count + cluster.running_count + cluster.held_count,
            series=self.series,
            plans=self.plans,
        )

    def _sample(self, t: float) -> None:
        on, cl = self.cluster.gpus_in_use()
        s = self.series
        s.t.append(t)
        s.onprem_used.append(on)
        s.cloud_used.append(cl)
        s.cloud_provisioned.append(sum(p.live_gpus() for p in self.providers.values()))
        s.pending.append(self.cluster.pending_count)
        s.spend.append(sum(p.cost(t) for p in self.providers.values()))


def node_name_for(instance_id: str) -> str:
    """The scheduler node name a burst instance registers as (its user data sets the same)."""
    return f"burst-{instance_id}"


def _describe(a: object) -> str:
    name = type(a).__name__
    ident = getattr(a, "intent_id", None) or getattr(a, "instance_id", None) or getattr(a, "image", "")
    offer = getattr(a, "offer", None)
    extra = f" {offer.key}" if offer is not None else ""
    jobs = getattr(a, "for_jobs", ())
    return f"{name} {ident}{extra} {','.join(jobs)}".strip()

