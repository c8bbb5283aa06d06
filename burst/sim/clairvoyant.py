"""The clairvoyant reference of BENCHMARKS.md B1. A yardstick, not a policy.

It knows every arrival and every duration. At each job's submission it predicts the job's
on-prem start by running the on-prem model forward (the B1 scheduling rule over the known end
times of running jobs and the queue as it stands); if that start would come more than ``W``
(30 min) after submission, the job goes to the cloud at once. A cloud job waits zero and costs
``gpus x duration x`` the cheapest eligible price per GPU-hour: no boot time, perfect packing.

The prediction ignores arrivals after the job (later jobs may take free GPUs first under the
no-reservation rule), so a few on-prem jobs can end up waiting a little over W; the reported
waits are the ones the replay actually produced.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass

from burst.sim.trace import TraceJob


@dataclass
class ClairvoyantResult:
    waits_s: list[float]
    cloud_usd: float
    cloud_gpu_hours: float
    cloud_jobs: int
    wall_s: float
    sim_s: float


class _Onprem:
    """B1's on-prem model: submission order, first fit (best fit per node), whole-node gangs."""

    def __init__(self, nodes: int, gpn: int) -> None:
        self.free = [gpn] * nodes
        self.gpn = gpn
        self.pending: list[TraceJob] = []  # submission order
        self.ends: list[tuple[float, int, int, tuple[int, ...], int]] = []  # (end, seq, per, nodes, gpus)
        self.seq = 0

    def copy(self) -> _Onprem:
        c = _Onprem.__new__(_Onprem)
        c.free = list(self.free)
        c.gpn = self.gpn
        c.pending = list(self.pending)
        c.ends = list(self.ends)
        c.seq = self.seq
        return c

    def _fit(self, j: TraceJob) -> tuple[int, ...] | None:
        free = self.free
        if j.nodes == 1:
            best = -1
            for idx, f in enumerate(free):
                if f >= j.per_node and (best < 0 or f < free[best]):
                    best = idx
                    if f == j.per_node:
                        break
            return (best,) if best >= 0 else None
        got: list[int] = []
        for idx, f in enumerate(free):
            if f >= j.per_node:
                got.append(idx)
                if len(got) == j.nodes:
                    return tuple(got)
        return None

    def schedule(self, now: float, durations: dict[str, float], watch: str = "") -> list[tuple[TraceJob, float]]:
        """Start all that fit. Returns started (job, start)."""
        started: list[tuple[TraceJob, float]] = []
        if not self.pending or max(self.free) == 0:
            return started
        keep: list[TraceJob] = []
        for j in self.pending:
            placed = self._fit(j) if max(self.free) > 0 else None
            if placed is None:
                keep.append(j)
                continue
            for idx in placed:
                self.free[idx] -= j.per_node
            self.seq += 1
            heapq.heappush(self.ends, (now + durations[j.id], self.seq, j.per_node, placed, j.gpus))
            started.append((j, now))
        self.pending = keep
        return started

    def complete_until(self, t: float) -> bool:
        any_done = False
        while self.ends and self.ends[0][0] <= t:
            _, _, per, placed, _ = heapq.heappop(self.ends)
            for idx in placed:
                self.free[idx] += per
            any_done = True
        return any_done


def run_clairvoyant(
    trace: Sequence[TraceJob], *, nodes: int, gpus_per_node: int, price_per_gpu_hour: float, window_s: float = 1800.0
) -> ClairvoyantResult:
    wall0 = time.perf_counter()
    durations = {j.id: j.duration for j in trace}
    world = _Onprem(nodes, gpus_per_node)
    waits: list[float] = []
    cloud_gpu_s = 0.0
    cloud_jobs = 0
    for job in trace:
        now = job.submit
        # advance the real world to this arrival, event by event
        while world.ends and world.ends[0][0] <= now:
            t = world.ends[0][0]
            world.complete_until(t)
            for j, s in world.schedule(t, durations):
                waits.append(s - j.submit)
        # predict this job's on-prem start, looking no further than the window
        probe = world.copy()
        probe.pending.append(job)
        start: float | None = None
        t = now
        while True:
            for j, s in probe.schedule(t, durations):
                if j.id == job.id:
                    start = s
            if start is not None or not probe.ends:
                break
            t = probe.ends[0][0]
            if t - job.submit > window_s:
                break
            probe.complete_until(t)
        if start is not None and start - job.submit <= window_s:
            world.pending.append(job)
            for j, s in world.schedule(now, durations):
                waits.append(s - j.submit)
        else:
            cloud_jobs += 1
            cloud_gpu_s += job.gpus * job.duration
            waits.append(0.0)
    # drain the rest
    while world.ends or world.pending:
        if not world.ends:
            break
        t = world.ends[0][0]
        world.complete_until(t)
        for j, s in world.schedule(t, durations):
            waits.append(s - j.submit)
    gpu_h = cloud_gpu_s / 3600.0
    return ClairvoyantResult(
        waits_s=waits,
        cloud_usd=gpu_h * price_per_gpu_hour,
        cloud_gpu_hours=gpu_h,
        cloud_jobs=cloud_jobs,
        wall_s=time.perf_counter() - wall0,
        sim_s=(trace[-1].submit - trace[0].submit) if trace else 0.0,
    )
