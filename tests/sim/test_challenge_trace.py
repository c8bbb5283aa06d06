"""A grand challenge on the bundled ITP trace, driven by the challenge runner over the simulated
cluster: every preempted job is restored and every job of the trace finishes; cancel before and
after draining. Also the ``--grand-challenge`` value parser and the summary figures.

The replay here has no cloud and no Controller: it is the challenge runner alone on the on-prem
queue (what ``burst simulate --grand-challenge`` adds to the ordinary replay once the runner is
part of ``Controller.tick``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from burst.domain import ChallengeState, GrandChallenge
from burst.errors import InputError
from burst.grand_challenge import ChallengeRunner, request_cancel
from burst.sim.challenges import ChallengeFlag, challenge_summary, parse_grand_challenge
from burst.sim.cluster import SimCluster
from burst.sim.runner import TRACE_EPOCH
from burst.sim.trace import TraceJob, bundled_trace_path, load_trace
from burst.store.memory import MemoryStore
from policies.grand_challenge import ChallengeSettings

TICK = 60.0
H = 3600.0
NODES = 80


def replay(
    trace: Sequence[TraceJob], flags: Sequence[ChallengeFlag], *, cancel: tuple[ChallengeState, ...] = (),
) -> tuple[SimCluster, MemoryStore, list[dict[str, object]]]:
    """Replay ``trace`` with the challenges of ``flags``; ``cancel``: phases in which an admin
    cancels each challenge (one per challenge, optional)."""
    cluster = SimCluster(NODES, 8, "A100")
    store = MemoryStore()
    runner = ChallengeRunner(store, cluster, None, ChallengeSettings())
    t0 = TRACE_EPOCH + trace[0].submit
    for k, f in enumerate(flags):
        store.add_challenge(GrandChallenge(id=f"gc-{k}", name=f"what-if {k}", start_at=f.start, duration_s=f.duration_s,
                                           command="", created_by="sim", nodes=f.nodes, job_text="#!/bin/sh\n"),
                            now=t0, actor="sim")
    now, i, cancelled = t0, 0, set()
    while True:
        cluster.complete_until(now)
        while i < len(trace) and TRACE_EPOCH + trace[i].submit <= now:
            cluster.submit(trace[i], TRACE_EPOCH + trace[i].submit)
            i += 1
        cluster.schedule(now)
        res = runner.run(now, cluster.snapshot())
        assert res.errors == []
        cluster.schedule(now)
        for k, phase in enumerate(cancel):
            gc = store.get_challenge(f"gc-{k}")
            if gc is not None and gc.state is phase and gc.id not in cancelled:
                request_cancel(store, gc.id, now=now, actor="ADMIN")
                cancelled.add(gc.id)
        active = store.challenges(states=[s for s in ChallengeState if s not in
                                          (ChallengeState.DONE, ChallengeState.CANCELLED, ChallengeState.FAILED)])
        if i >= len(trace) and not (cluster.pending_count or cluster.running_count or cluster.held_count or active):
            break
        cands = [c for c in (TRACE_EPOCH + trace[i].submit if i < len(trace) else None, cluster.next_completion(),
                             res.wake_at) if c is not None]
        nxt = min(cands) if cands else now + TICK
        now = max(now + TICK, t0 + math.ceil((nxt - t0) / TICK) * TICK)
    return cluster, store, [challenge_summary(gc, cluster) for gc in store.challenges()]


@pytest.fixture(scope="module")
def trace() -> list[TraceJob]:
    return load_trace(bundled_trace_path(), days=2.0)


def test_challenges_on_the_bundled_trace_restore_every_preempted_job(trace: list[TraceJob]) -> None:
    t0 = TRACE_EPOCH + trace[0].submit
    flags = [parse_grand_challenge("0.75,6h", t0), parse_grand_challenge("1.5,2h,40", t0)]
    cluster, store, (s, s2) = replay(trace, flags)
    assert s["state"] == "done" and s["nodes"] == NODES
    assert s2["state"] == "done" and s2["nodes"] == 40
    assert isinstance(s2["preempted_jobs"], int) and 0 < s2["preempted_jobs"] == s2["restored_jobs"]
    assert isinstance(s["preempted_jobs"], int) and s["preempted_jobs"] > 0
    assert s["preempted_jobs"] == s["restored_jobs"]
    assert set(cluster.finished) >= {j.id for j in trace}  # every job of the trace finished
    assert cluster.held_count == cluster.pending_count == cluster.running_count == 0
    # each preempted job checkpointed on the signal: at most the 5 min grace is lost per job
    gc = store.get_challenge("gc-0")
    assert gc is not None
    grace_bound = sum(p.gpus for p in gc.preempted_jobs) * 300.0 / 3600.0
    assert 0 <= float(s["lost_gpu_hours"]) <= grace_bound + 1e-6  # type: ignore[arg-type]
    assert 300.0 <= float(s["challenge_started_s"]) <= 300.0 + 2 * TICK  # type: ignore[arg-type]
    assert s["restored_s"] == 0.0  # released on the tick that saw the challenge end
    for p in gc.preempted_jobs:
        sj = cluster.job(p.job_id)
        assert sj is not None and (sj.signals, sj.hold_calls, sj.release_calls) == (1, 1, 1)


def test_cancel_before_draining_leaves_the_trace_untouched(trace: list[TraceJob]) -> None:
    t0 = TRACE_EPOCH + trace[0].submit
    cluster, store, (s,) = replay(trace, [parse_grand_challenge("0.75,6h", t0)], cancel=(ChallengeState.NOTIFIED,))
    assert s["state"] == "cancelled" and s["preempted_jobs"] == 0
    assert cluster.hold_log == [] and cluster.reservations == {}
    assert set(cluster.finished) >= {j.id for j in trace}


def test_cancel_after_draining_restores_everything(trace: list[TraceJob]) -> None:
    t0 = TRACE_EPOCH + trace[0].submit
    cluster, store, (s,) = replay(trace, [parse_grand_challenge("0.75,6h", t0)], cancel=(ChallengeState.RUNNING,))
    assert s["state"] == "cancelled"
    assert isinstance(s["preempted_jobs"], int) and 0 < s["preempted_jobs"] == s["restored_jobs"]
    assert "burst-gc-0" in cluster.finished  # the challenge job was cancelled
    assert cluster.reservations == {} and set(cluster.finished) >= {j.id for j in trace}


PARSE = [
    ("1.5,6h", ChallengeFlag(1000.0 + 1.5 * 86400, 6 * H, 0)),
    ("0,90m,12", ChallengeFlag(1000.0, 5400.0, 12)),
    ("1614900000,1d12h", ChallengeFlag(1614900000.0, 36 * H, 0)),
    ("2021-03-05T12:00Z,3600", ChallengeFlag(1614945600.0, 3600.0, 0)),
    ("2021-03-05T12:00,2h", ChallengeFlag(1614945600.0, 2 * H, 0)),
]


@pytest.mark.parametrize(("value", "want"), PARSE)
def test_parse_grand_challenge(value: str, want: ChallengeFlag) -> None:
    assert parse_grand_challenge(value, 1000.0) == want


@pytest.mark.parametrize(("value", "error"), [
    ("1.5", "expected START,DURATION"), ("1,2,3,4", "expected START,DURATION"), ("x,6h", "START 'x'"),
    ("1,soon", "not a duration"), ("1,0", "more than 0"), ("1,6h,two", "NODES 'two'"), (",6h", "expected"),
])
def test_parse_grand_challenge_refuses_bad_values(value: str, error: str) -> None:
    with pytest.raises(InputError, match=error):
        parse_grand_challenge(value, 1000.0)
