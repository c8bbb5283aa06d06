"""The simulator as an adapter set: a simulated on-prem cluster (a :class:`burst.ports.QueueSource`),
simulated clouds (:class:`burst.ports.Provider` each) and the virtual clock they share, fed by a
job trace.

A :class:`SimWorld` holds no controller. Whoever drives it composes it with an ordinary
:class:`burst.controller.Controller` over the same ports: :class:`burst.sim.runner.Simulation`
(virtual time, ticking only when something changed) or ``burst run`` on the simulated queue
(:mod:`burst.wiring`, scaled wall time). Both move the world with :meth:`SimWorld.advance_to`
before a tick and let the simulated scheduler start work with :meth:`SimWorld.after_tick` after it.

Time zero of the ITP traces is taken as 2021-03-04T00:00Z (the start of their collection), so
day and month budgets fall on real calendar boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from burst.sim.clock import VirtualClock
from burst.sim.cloud import SimInstance, SimProvider
from burst.sim.cluster import SimCluster, SimJob
from burst.sim.trace import TraceJob
from policies.spot import NOTICE_LEAD_S, notice_reason

TRACE_EPOCH = 1614816000.0  # 2021-03-04T00:00:00Z


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
    # Spot reclaims are announced ahead (policies.spot.NOTICE_LEAD_S per cloud) and the node's
    # agent drains its node with the notice reason; False: reclaims come unannounced.
    spot_notices: bool = False


def node_name_for(instance_id: str) -> str:
    """The scheduler node name a burst instance registers as (its user data sets the same)."""
    return f"burst-{instance_id}"


class SimWorld:
    """The simulated cluster and clouds, moved by trace events on one virtual clock.

    ``clouds`` names the simulated clouds (one :class:`SimProvider` each, seeded by its place in
    sorted order, so the same settings give the same world). The world also keeps the figures
    only it can see: each job's wait and the GPU-seconds jobs used on cloud nodes.
    """

    def __init__(self, trace: Sequence[TraceJob], settings: SimSettings, clouds: Iterable[str]) -> None:
        if not trace:
            raise ValueError("empty trace")
        self.trace = list(trace)
        self.s = settings
        self.clock = VirtualClock(TRACE_EPOCH + self.trace[0].submit)
        self.waits: list[float] = []
        self.cloud_gpu_s_used = 0.0
        self.reclaim_lost_gpu_s = 0.0  # GPU-seconds of work lost with jobs still on a reclaimed node
        self.cluster = SimCluster(
            settings.nodes, settings.gpus_per_node, settings.gpu_model, on_start=self._on_start, on_finish=self._on_finish,
            on_stop=self._on_finish,
        )
        self.providers: dict[str, SimProvider] = {}
        for i, cloud in enumerate(sorted(set(clouds))):
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
                notice_lead_s=NOTICE_LEAD_S.get(cloud, 30.0) if settings.spot_notices else 0.0,
                on_notice=self._on_notice,
            )
        self._plist = list(self.providers.values())
        self.submitted = 0  # trace jobs handed to the cluster so far
        self.cloud_events = 0  # cloud events since the driver last reset it

    # ---- world hooks -------------------------------------------------------------------------
    def _on_start(self, sj: SimJob, now: float) -> None:
        # A trace job's wait ends at its first start: not again after a requeue or a grand
        # challenge's hold, and a challenge job is not part of the trace.
        if sj.requeues == 0 and sj.holds == 0 and not sj.reservation:
            self.waits.append(now - sj.submit)

    def _on_finish(self, sj: SimJob, now: float) -> None:
        # Also every run stopped early (on_stop: a reclaim, a hold on a spot notice, a cancel):
        # a cloud run's GPU time was used whether or not the job finished there.
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
        if inst.noticed:
            self._on_notice(inst, now)  # the agent starts on boot and finds the notice up

    def _on_notice(self, inst: SimInstance, now: float) -> None:
        # The node agent (burst/agent) seeing the notice: it drains its own node with the reason
        # the controller recognises. A node that has not joined yet is drained when it joins.
        if inst.interrupt_at is not None and self.cluster._node(node_name_for(inst.burst_id)) is not None:
            self.cluster.drain_node(node_name_for(inst.burst_id), notice_reason(inst.interrupt_at))

    def _on_gone(self, inst: SimInstance, now: float) -> None:
        # A terminated or reclaimed instance's node leaves; work still on it is requeued.
        name = node_name_for(inst.burst_id)
        node = self.cluster._node(name)
        if node is not None:
            for jid in list(node.jobs):
                sj = self.cluster._running.get(jid)
                if sj is not None and sj.start is not None and sj.cloud:
                    # (its GPU time used is counted by on_stop as the node's removal stops it)
                    if inst.interrupted:
                        # requeued by the node's removal: this run's work is lost (the cautious
                        # model of the simulator: no restart from a periodic checkpoint)
                        self.reclaim_lost_gpu_s += (now - sj.start) * sj.trace.gpus
            self.cluster.remove_node(name)

    # ---- moving the world ----------------------------------------------------------------------
    def next_event(self) -> float | None:
        """When the next world event (arrival, completion, boot, reclaim) falls, if any."""
        # Called once per world step: the earliest of three sources, without building a list.
        best = TRACE_EPOCH + self.trace[self.submitted].submit if self.submitted < len(self.trace) else None
        c = self.cluster.next_completion()
        if c is not None and (best is None or c < best):
            best = c
        for p in self._plist:
            e = p.next_event()
            if e is not None and (best is None or e < best):
                best = e
        return best

    def step_to(self, t: float) -> None:
        """Apply every world event due at ``t``: completions, boots/reclaims, arrivals; schedule."""
        self.clock.set(max(t, self.clock.now()))
        t = self.clock.now()
        self.cluster.complete_until(t)
        for p in self._plist:
            self.cloud_events += p.advance(t)
        trace = self.trace
        while self.submitted < len(trace) and TRACE_EPOCH + trace[self.submitted].submit <= t:
            self.cluster.submit(trace[self.submitted], TRACE_EPOCH + trace[self.submitted].submit)
            self.submitted += 1
        self.cluster.schedule(t)

    def advance_to(self, target: float) -> None:
        """Every event up to ``target``, then the clock to ``target``: a daemon's ``before_tick``."""
        while True:
            t = self.next_event()
            if t is None or t > target:
                break
            self.step_to(t)
        if target > self.clock.now():
            self.step_to(target)

    def after_tick(self, now: float) -> None:
        """What the simulated scheduler does right after a controller tick: start what fits (an
        Undrain frees capacity at once). The simulator's loop and the live daemon both call it."""
        self.cluster.schedule(now)
