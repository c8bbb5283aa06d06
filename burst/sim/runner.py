"""The simulator: replays a trace through the real :class:`burst.controller.Controller`.

The world (simulated cluster, clouds and virtual clock) is the adapter set
:class:`burst.sim.world.SimWorld`; a :class:`Simulation` composes it with an ordinary Controller
and drives both. Discrete events (arrivals, completions, boots, reclaims) move a virtual clock. The controller
ticks on the daemon's grid (every ``tick_s`` seconds, like the APScheduler interval job) but
only on grid points where something changed or the last Plan asked to be woken (``wake_at``);
on the other grid points the daemon's tick would find nothing to do. The simulated cluster
schedules continuously, as a real scheduler does between controller ticks.

Time zero of the ITP traces is taken as 2021-03-04T00:00Z (:data:`TRACE_EPOCH`, the start of their
collection), so day and month budgets fall on real calendar boundaries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from burst.catalog import Catalog, OfferFilter
from burst.controller import BudgetCaps, Controller
from burst.domain import Market, Offer
from burst.ports import Store
from burst.sim.trace import TraceJob
from burst.sim.world import TRACE_EPOCH, SimSettings, SimWorld, node_name_for
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from policies.grand_challenge import ChallengeSettings

__all__ = ["TRACE_EPOCH", "SimResult", "SimSettings", "Simulation", "b1_offers", "node_name_for"]

B1_REGIONS = ("us-east-1", "us-west-2", "eastus", "westus2")
B1_ACCELERATORS = ("V100", "V100-32GB", "A100", "A100-80GB", "H100")


def b1_offers(catalog: Catalog | None = None, *, spot: bool = False) -> list[Offer]:
    """The cloud of BENCHMARKS.md B1: 2 AWS + 2 Azure regions, V100..H100, on-demand (+spot)."""
    cat = catalog or Catalog.bundled()
    markets = (Market.ON_DEMAND, Market.SPOT) if spot else (Market.ON_DEMAND,)
    return cat.offers(OfferFilter(clouds=("aws", "azure"), regions=B1_REGIONS, accelerators=B1_ACCELERATORS, markets=markets))


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
        challenge_settings: ChallengeSettings | None = None,
    ) -> None:
        if not trace:
            raise ValueError("empty trace")
        self.trace = list(trace)
        self.policy = policy
        self.s = settings
        self.offers = list(offers) if offers is not None else b1_offers()
        self.world = SimWorld(self.trace, settings, {o.cloud for o in self.offers})
        self.clock = self.world.clock
        self.cluster = self.world.cluster
        self.providers = self.world.providers
        self.store: Store = store if store is not None else MemoryStore(audit_limit=10_000)
        self.record_plans = record_plans
        self.controller = Controller(
            cluster=settings.cluster,
            queue=self.cluster,
            providers=self.providers,
            store=self.store,
            offers=self.offers,
            policy=policy,
            caps=BudgetCaps(settings.month_cap_usd, settings.day_cap_usd),
            # The simulated cluster runs grand challenges through the same tick (what-if:
            # `burst simulate --grand-challenge`); with none stored, this costs one read a tick.
            challenge_queue=self.cluster,
            challenge_settings=challenge_settings,
        )
        self.series = Series()
        self.clock_origin = self.clock.now()
        self.ticks = 0
        self.plans: list[tuple[float, tuple[str, ...]]] = []

    # ---- the world's hooks, for a daemon that drives this simulation's world -------------------
    def advance_to(self, target: float) -> None:
        """Live mode: move the world, not the controller (:meth:`SimWorld.advance_to`)."""
        self.world.advance_to(target)

    def after_tick(self, now: float) -> None:
        """:meth:`SimWorld.after_tick`: ``run()`` and a daemon both call it after a tick."""
        self.world.after_tick(now)

    def _grid(self, t: float) -> float:
        base = self.clock_origin
        return base + math.ceil((t - base) / self.s.tick_s - 1e-9) * self.s.tick_s

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
        world = self.world
        last_progress = 0.0
        while True:
            t_world = world.next_event()
            if t_world is None and next_tick is None:
                break
            if next_tick is None or (t_world is not None and t_world < next_tick):
                assert t_world is not None
                t = t_world
            else:
                t = next_tick
            world.step_to(t)
            t = self.clock.now()
            if cluster.version != last_version or world.cloud_events:
                # Cloud events count too: a reclaim of an instance that has not joined yet
                # changes no node, but the daemon's next tick would see it and replace it.
                world.cloud_events = 0
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
            if progress is not None and world.submitted < n:
                frac = (trace[world.submitted].submit - trace[0].submit) / span
                if frac - last_progress >= 0.01:
                    last_progress = frac
                    progress(frac)
        end = self.clock.now()
        self._sample(end)
        if progress is not None:
            progress(1.0)
        wall = time.perf_counter() - wall0
        providers = list(self.providers.values())
        cost = sum(p.cost(end) for p in providers)
        paid = sum(p.gpu_hours_paid(end) for p in providers)
        ledger = self.store.spend(since=0.0, now=end)
        return SimResult(
            policy=self.policy.name,
            jobs=n,
            waits_s=list(world.waits),
            cloud_usd=cost,
            gpu_hours_paid=paid,
            gpu_hours_used=world.cloud_gpu_s_used / 3600.0,
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


def _describe(a: object) -> str:
    name = type(a).__name__
    ident = getattr(a, "intent_id", None) or getattr(a, "instance_id", None) or getattr(a, "image", "")
    offer = getattr(a, "offer", None)
    extra = f" {offer.key}" if offer is not None else ""
    jobs = getattr(a, "for_jobs", ())
    return f"{name} {ident}{extra} {','.join(jobs)}".strip()

