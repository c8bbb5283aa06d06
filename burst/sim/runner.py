"""The simulator: replays a trace through the real :class:`burst.controller.Controller`.

The world (simulated cluster, clouds and virtual clock) is the adapter set
:class:`burst.sim.world.SimWorld`; a :class:`Simulation` composes it with an ordinary Controller
and drives both. Discrete events (arrivals, completions, boots, reclaims) move a virtual clock. The controller
ticks on the daemon's grid (every ``tick_s`` seconds, like the APScheduler interval job) but
only on grid points where something changed or the last Plan asked to be woken (``wake_at``);
on the other grid points the daemon's tick would find nothing to do. A tick driven only by an
on-prem change while nothing is queued, after a tick that acted on nothing, is idle too and is
counted without being run (``Simulation._idle_after`` says why that is exact; most ticks of a
B1 replay are such). The simulated cluster schedules continuously, as a real scheduler does
between controller ticks.

Time zero of the ITP traces is taken as 2021-03-04T00:00Z (:data:`TRACE_EPOCH`, the start of their
collection), so day and month budgets fall on real calendar boundaries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from burst.catalog import Catalog, OfferFilter
from burst.controller import BudgetCaps, Controller, TickResult
from burst.domain import Instance, Market, Offer
from burst.ports import Store
from burst.sim.trace import TraceJob
from burst.sim.world import TRACE_EPOCH, SimSettings, SimWorld, node_name_for
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from policies.grand_challenge import ChallengeSettings
from policies.requests import ACTIVE_REQUEST_STATES

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
    ticks: int  # the daemon's ticks, elided idle ones included (the same count either way)
    capacity_errors: int = 0
    interruptions: int = 0
    requeues: int = 0
    ledger_usd: float = 0.0
    unfinished: int = 0
    series: Series = field(default_factory=Series)
    plans: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    ticks_elided: int = 0  # of ``ticks``: proven idle and not run (Simulation._idle_after)

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
        elide_idle_ticks: bool = True,
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
        self.ticks_elided = 0  # of ``ticks``: the idle ones answered without running (_idle_after)
        self.plans: list[tuple[float, tuple[str, ...]]] = []
        # Ticks proven idle may be elided (see _idle_after) unless the policy learns from every
        # tick's observation (run-time prediction) or re-asks sooner than the grid does.
        self._may_elide = elide_idle_ticks and not policy.overflow.predict_starts and policy.tick_interval_s <= settings.tick_s

    # ---- the world's hooks, for a daemon that drives this simulation's world -------------------
    def advance_to(self, target: float) -> None:
        """Live mode: move the world, not the controller (:meth:`SimWorld.advance_to`)."""
        self.world.advance_to(target)

    def after_tick(self, now: float) -> None:
        """:meth:`SimWorld.after_tick`: ``run()`` and a daemon both call it after a tick."""
        self.world.after_tick(now)

    # ---- idle ticks ---------------------------------------------------------------------------
    def _mark(self) -> tuple[int, int]:
        """What moves when anything the controller reads of the world changes, apart from on-prem
        nodes and running jobs: the burst nodes' views and every cloud's instances."""
        return self.cluster.cloud_version, sum(p.changes for p in self.providers.values())

    def _idle_after(self, res: TickResult, mark: tuple[int, int], live: tuple[Instance, ...], queued: int) -> bool:
        """Whether the tick just run was idle in the sense that lets the next change-driven
        tick be elided while ``_still_idle(mark)`` holds.

        Idle: it acted on nothing (no plan action, no executor outcome, nothing recovered,
        no orphan terminated, not skipped), wrote no instance row (the same live row objects
        before and after), moved no burst node or cloud instance (``mark`` unchanged), and saw
        and left no pending or held job; and nothing that follows its own clock is in play
        (no active on-demand request, no grand challenge, no spot hold; the policy's
        run-time learner is off, see ``_may_elide``).

        Why a later tick is then idle too, with the same wake_at, while only on-prem nodes
        and running jobs changed and no deadline it asked for has passed (``t < wake_tick``):
        with no job pending, what the tick reads is the store (unchanged: only ticks write it),
        the cloud listings and the burst nodes (the very same objects: ``mark``) and the
        clock. Overflow has no job to place; the jobs it asks about in ``running`` are the
        ones instances were launched for, and in the simulator such a job can only start or
        stop between ticks through a burst node (a requeue needs a node to leave) or a
        controller action. Scale-in and reconcile read only instance rows, listings and burst
        nodes, and the clock only through deadlines they return as wake_at: absolute ones are
        the same again, and a relative one (``now + tick``, at most the grid step) already made
        the next grid point a wake tick. A surplus booting instance is kept only while it is
        about to join, which stays true as time passes. So the tick answers nothing, writes
        nothing and asks for the same wake; eliding it leaves every later tick the same.
        tests/sim/test_idle_ticks.py replays with and without elision and compares everything."""
        ex = res.executed
        if (
            res.skipped or res.plan.actions or res.recovered or res.orphans_terminated
            or ex.launched or ex.failed or ex.terminated or ex.drained or ex.mirrored or ex.errors or ex.notified
        ):
            return False
        c = self.cluster
        if queued or c.pending_count or c.held_count or self._mark() != mark:
            return False
        after = self.store.live_instances()
        if len(after) != len(live) or any(a is not b for a, b in zip(after, live, strict=True)):
            return False
        return not (
            self.controller.spot_holds() or self.store.requests(states=ACTIVE_REQUEST_STATES) or self.store.challenges()
        )

    def _still_idle(self, mark: tuple[int, int]) -> bool:
        """No job queued and no burst node or cloud instance changed since the idle tick."""
        c = self.cluster
        return not c.pending_count and not c.held_count and self._mark() == mark

    def _grid(self, t: float) -> float:
        base = self.clock_origin
        return base + math.ceil((t - base) / self.s.tick_s - 1e-9) * self.s.tick_s

    def run(self, progress: Progress | None = None) -> SimResult:
        wall0 = time.perf_counter()
        trace = self.trace
        n = len(trace)
        start = self.clock_origin
        span = max(1.0, trace[-1].submit - trace[0].submit)
        # The next tick is the earlier of two grid points: ``wake_tick``, what the last tick
        # asked for (its wake_at, the tick after acting, a retry), and ``change_tick``, the
        # first grid point after a change that no tick has seen yet.
        wake_tick: float | None = None
        change_tick: float | None = None
        last_version = -1
        next_sample = start
        cluster = self.cluster
        world = self.world
        last_progress = 0.0
        # What the last tick saw, when it was idle (see _idle_after); None otherwise.
        idle_mark: tuple[int, int] | None = None
        while True:
            next_tick = change_tick if wake_tick is None else wake_tick if change_tick is None else min(wake_tick, change_tick)
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
                change_tick = g if change_tick is None else min(change_tick, g)
            next_tick = change_tick if wake_tick is None else wake_tick if change_tick is None else min(wake_tick, change_tick)
            if next_tick is not None and t >= next_tick:
                if idle_mark is not None and (wake_tick is None or t < wake_tick) and self._still_idle(idle_mark):
                    # The daemon's tick here would find nothing to do (see _idle_after): it is
                    # counted, not run, and leaves everything as that tick would have.
                    self.ticks += 1
                    self.ticks_elided += 1
                    self.after_tick(t)
                    last_version = cluster.version
                    change_tick = None
                else:
                    if self._may_elide:
                        mark = self._mark()
                        queued = cluster.pending_count + cluster.held_count
                        live = () if queued else tuple(self.store.live_instances())  # queued: not idle anyway
                    res = self.controller.tick(t)
                    self.ticks += 1
                    idle_mark = mark if self._may_elide and self._idle_after(res, mark, live, queued) else None
                    self.after_tick(t)
                    last_version = cluster.version
                    change_tick = wake_tick = None
                    if res.wake_at is not None:  # the plan's wake_at or a controller deadline
                        wake_tick = self._grid(max(res.wake_at, t + self.s.tick_s))
                    if res.plan.actions:
                        # Acting changed the store and the clouds (e.g. a Terminate of in-flight
                        # capacity uncovers a job) in ways the cluster's version does not show:
                        # the daemon's next tick would see that, so tick then too.
                        g = self._grid(t + self.s.tick_s)
                        wake_tick = g if wake_tick is None else min(wake_tick, g)
                    if self.record_plans and res.plan.actions:
                        self.plans.append((t, tuple(_describe(a) for a in res.plan.actions)))
                    if res.skipped:
                        wake_tick = self._grid(t + self.s.tick_s)
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
            ticks_elided=self.ticks_elided,
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

