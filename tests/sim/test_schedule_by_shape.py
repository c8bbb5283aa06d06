"""The simulated scheduler's pass by job shape starts exactly the jobs, on exactly the nodes,
that B1's rule (walk the queue in order, start every job that fits) starts.

The reference below is the walk the simulator used before (it tried every pending job after
every completion). Random arrivals (sizes, gangs, models, jobs that may not burst, ties in
submit time), completions, burst nodes joining and leaving, drains, holds, releases and
priorities are applied to two clusters, one scheduling each way, and after every step the
running jobs and their nodes must agree.
"""

from __future__ import annotations

import types

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.sim.cluster import SimCluster, SimNode
from burst.sim.trace import TraceJob


def _walk(self: SimCluster, now: float) -> int:
    """B1's rule, job by job (the simulator's pass before it scheduled by shape)."""
    if not self._pending:
        self._new_since_pass.clear()
        return 0
    if self._capacity_grew:
        if not self._pending_sorted:
            self._sort_pending()
        candidates = list(self._pending.values())
    else:
        candidates = [self._pending[j] for j in self._new_since_pass if j in self._pending]
    candidates = [sj for sj in candidates if not sj.reservation]
    self._capacity_grew = False
    self._new_since_pass.clear()
    started = 0
    for sj in candidates:
        tj = sj.trace
        chosen: list[SimNode] | None
        if tj.nodes == 1:
            n = self._fit_one(self._onprem, tj.per_node, tj.gpu_model)
            if n is None and tj.may_burst:
                n = self._fit_one(self._cloud, tj.per_node, tj.gpu_model)
            chosen = [n] if n is not None else None
        else:
            chosen = self._fit_gang(self._onprem, tj.nodes, tj.per_node, tj.gpu_model, False)
            if chosen is None and tj.may_burst:
                chosen = self._fit_gang(self._cloud, tj.nodes, tj.per_node, tj.gpu_model, True)
        if chosen is None:
            continue
        del self._pending[tj.id]
        self._plist = None  # the snapshot's kept pending list (SimCluster._plist) is rebuilt
        self._pend_t = None  # and its kept pending tuple (SimCluster._pend_t)
        self._start(sj, chosen, now)
        started += 1
    if started:
        self._snap = None
        self.version += 1
    return started


step = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from((1, 2, 4, 8, 8, 16, 24)), st.sampled_from(("", "A100", "H100")),
              st.booleans(), st.sampled_from((0.0, 0.0, 1.0)), st.integers(600, 20_000)),
    st.tuples(st.just("advance"), st.integers(0, 8_000)),
    st.tuples(st.just("join"), st.sampled_from(("aws/us-east-1", "azure/eastus")), st.sampled_from(("A100", "H100"))),
    st.tuples(st.just("leave"), st.integers(0, 5)),
    st.tuples(st.just("drain"), st.integers(0, 7)),
    st.tuples(st.just("undrain"), st.integers(0, 7)),
    st.tuples(st.just("hold"), st.integers(0, 40)),
    st.tuples(st.just("release"), st.integers(0, 40)),
    st.tuples(st.just("priority"), st.integers(0, 40), st.integers(-1, 2)),
)


def _running(c: SimCluster) -> dict[str, tuple[str, ...]]:
    return {j.id: j.node_names for j in c.snapshot().running}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=60))
def test_shape_pass_starts_what_the_walk_starts(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    fast, ref = SimCluster(3), SimCluster(3)
    ref._schedule_open = types.MethodType(_walk, ref)  # type: ignore[method-assign]
    now, k, joined = 0.0, 0, 0
    for s in steps:
        for c in (fast, ref):
            if s[0] == "submit":
                gpus, model, may_burst, dt, dur = s[1], s[2], s[3], s[4], s[5]
                nodes = gpus // 8 if gpus > 8 else 1
                tj = TraceJob(id=f"j{k:03d}", submit=now, duration=float(dur), gpus=gpus, nodes=nodes,
                              per_node=8 if nodes > 1 else gpus, may_burst=may_burst, gpu_model=model)
                c.submit(tj, now + dt)
            elif s[0] == "advance":
                c.complete_until(now + s[1])
            elif s[0] == "join":
                c.add_cloud_node(f"burst-{joined}", 8, s[2], s[1], f"i-{joined}")
            elif s[0] == "leave":
                c.remove_node(f"burst-{s[1]}")
            elif s[0] == "drain":
                c.drain_node(f"onprem-{s[1] % 3 + 1:04d}" if s[1] < 3 else f"burst-{s[1] - 3}", "test")
            elif s[0] == "undrain":
                c.undrain_node(f"onprem-{s[1] % 3 + 1:04d}" if s[1] < 3 else f"burst-{s[1] - 3}", "test")
            elif s[0] == "hold":
                c.hold([f"j{s[1]:03d}"])
            elif s[0] == "release":
                c.release([f"j{s[1]:03d}"])
            elif s[0] == "priority":
                c.set_priority(f"j{s[1]:03d}", s[2])
        if s[0] == "submit":
            k += 1
        if s[0] == "advance":
            now += s[1]
        if s[0] == "join":
            joined += 1
        for c in (fast, ref):
            c.schedule(now)
        assert _running(fast) == _running(ref)
        assert [j.id for j in fast.snapshot().pending] == [j.id for j in ref.snapshot().pending]


def test_the_oldest_job_that_fits_goes_first_whatever_its_shape() -> None:
    """A small job's shape was seen first, but the older big job takes the freed node."""
    c = SimCluster(1)

    def tj(jid: str, gpus: int, dur: float) -> TraceJob:
        return TraceJob(id=jid, submit=0.0, duration=dur, gpus=gpus, nodes=1, per_node=gpus)

    c.submit(tj("small0", 1, 100.0), 0.0)
    c.submit(tj("seven", 7, 100.0), 0.0)
    c.schedule(0.0)
    c.submit(tj("big", 8, 100.0), 1.0)
    c.submit(tj("small1", 1, 100.0), 2.0)
    c.schedule(2.0)
    assert {j.id for j in c.snapshot().pending} == {"big", "small1"}
    c.complete_until(100.0)
    c.schedule(100.0)
    assert _running(c) == {"big": ("onprem-0001",)}
