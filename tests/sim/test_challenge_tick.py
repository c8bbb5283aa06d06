"""A grand challenge through the ordinary ``Controller.tick`` of a replay with bursting on.

The runner is part of the tick (issue 10), so the same replay that bursts overflow also runs the
challenge; these tests check that the two respect each other: a preempted job that is held is not
cloud demand (no instance is launched for it), and the challenge's reserved nodes are not counted
as free capacity that pending work could wait for.
"""

from __future__ import annotations

import pytest

from burst.domain import ChallengeState, GrandChallenge
from burst.sim.runner import TRACE_EPOCH, SimSettings, Simulation
from burst.sim.trace import TraceJob, bundled_trace_path, load_trace
from burst.store.memory import MemoryStore
from policies import PolicyConfig

H = 3600.0
NODES = 24  # busy enough that the bundled trace's first days burst


@pytest.fixture(scope="module")
def trace() -> list[TraceJob]:
    return load_trace(bundled_trace_path(), days=2.0)


def _replay(trace: list[TraceJob], *, start_day: float, hours: float, burst_preempted: bool = False
            ) -> tuple[Simulation, MemoryStore, GrandChallenge]:
    store = MemoryStore()
    t0 = TRACE_EPOCH + trace[0].submit
    gc = GrandChallenge(id="gc-tick", name="what-if", start_at=t0 + start_day * 86400.0, duration_s=hours * H,
                        command="", created_by="admin", job_text="#!/bin/sh\n", burst_preempted=burst_preempted)
    store.add_challenge(gc, now=t0, actor="admin")
    sim = Simulation(trace, PolicyConfig(), settings=SimSettings(nodes=NODES), store=store)
    return sim, store, gc


def test_a_challenge_runs_in_the_tick_and_held_jobs_never_burst(trace: list[TraceJob]) -> None:
    sim, store, _ = _replay(trace, start_day=0.75, hours=4)
    res = sim.run()
    gc = store.get_challenge("gc-tick")
    assert gc is not None and gc.state is ChallengeState.DONE, gc
    assert gc.preempted_jobs and all(p.restored and p.released_at is not None for p in gc.preempted_jobs)
    assert res.unfinished == 0 and set(sim.cluster.finished) >= {j.id for j in trace}
    held_from = gc.entered_at(ChallengeState.PREEMPTING)
    assert held_from is not None
    released = {p.job_id: p.released_at for p in gc.preempted_jobs}
    launched_for_held = [
        (i.id, j) for i in store.instances(limit=100_000) for j in i.for_jobs
        if j in released and held_from <= i.created_at < (released[j] or 0.0)
    ]
    assert launched_for_held == [], "an instance was launched for a job the challenge holds"
    assert res.instances > 0, "the scenario must burst, or it does not test the interplay"
    # the challenge job ran in its reservation, not in the cloud
    assert gc.challenge_job_id and all(gc.challenge_job_id not in i.for_jobs for i in store.instances(limit=100_000))


def test_burst_preempted_sends_the_preempted_jobs_to_the_cloud(trace: list[TraceJob]) -> None:
    sim, store, _ = _replay(trace, start_day=0.75, hours=4, burst_preempted=True)
    res = sim.run()
    gc = store.get_challenge("gc-tick")
    assert gc is not None and gc.state is ChallengeState.DONE
    assert res.unfinished == 0
    preempted = {p.job_id for p in gc.preempted_jobs}
    served = {j for i in store.instances(limit=100_000) for j in i.for_jobs} & preempted
    assert served, "with --burst-preempted, preempted jobs that may burst run in the cloud"
