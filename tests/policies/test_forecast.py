"""Remaining-time maths (policies/remaining.py) and the on-prem start forecast overflow holds by
(policies/forecast.py, policies/overflow.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from burst.domain import Job, JobState, Launch
from policies import decide
from policies.model import OverflowConfig
from policies.overflow import select_overflow
from policies.remaining import ALL, DurationModel
from tests.policies.helpers import CFG, MIN, NOW, full_cluster, job, onprem, snap

# 100 finished 8-GPU jobs: 60 ran 10 min, 40 ran 5 h.
RUNS = tuple(sorted([10 * MIN] * 60 + [300 * MIN] * 40))
MODEL = DurationModel({ALL: RUNS, 8: RUNS})


def test_survival_is_the_fraction_that_ran_longer() -> None:
    assert MODEL.survival(8, 5 * MIN) == 1.0
    assert MODEL.survival(8, 10 * MIN) == pytest.approx(0.4)
    assert MODEL.survival(8, 300 * MIN) == 0.0


def test_remaining_given_elapsed_follows_the_conditional_survival() -> None:
    # After 2 min: 60 of 100 end at 10 min, i.e. 8 min on; the rest 298 min on.
    assert MODEL.end_probability(8, 2 * MIN, 8 * MIN) == pytest.approx(0.6)
    assert MODEL.remaining_quantile(8, 2 * MIN, 0.6) == pytest.approx(8 * MIN)
    assert MODEL.remaining_quantile(8, 2 * MIN, 0.61) == pytest.approx(298 * MIN)
    assert MODEL.expected_remaining(8, 2 * MIN) == pytest.approx(0.6 * 8 * MIN + 0.4 * 298 * MIN)
    # After 20 min only the 5-hour jobs are left: the job ends at 5 h for sure.
    assert MODEL.end_probability(8, 20 * MIN, 270 * MIN) == 0.0
    assert MODEL.remaining_quantile(8, 20 * MIN, 0.5) == pytest.approx(280 * MIN)


def test_thin_evidence_promises_nothing() -> None:
    few = DurationModel({ALL: (MIN,) * 10})
    assert math.isinf(few.remaining_quantile(1, 0.0, 0.5))
    assert few.end_probability(1, 0.0, 10 * MIN) == 0.0
    # Older than every finished job: nothing is known about when it ends.
    assert math.isinf(MODEL.remaining_quantile(8, 400 * MIN, 0.5))


def test_a_small_bucket_borrows_the_whole_distribution() -> None:
    m = DurationModel({ALL: RUNS, 1: (MIN,) * 5})
    assert m.count(1) == len(RUNS)
    assert m.remaining_quantile(1, 2 * MIN, 0.6) == pytest.approx(8 * MIN)


def _running(jid: str, node: str, elapsed: float, gpus: int = 8, limit: float | None = None) -> Job:
    return Job(jid, gpus, NOW - elapsed - MIN, state=JobState.RUNNING, start_time=NOW - elapsed,
               node_names=(node,), time_limit_s=limit)


PRED = OverflowConfig(wait_threshold_s=20 * MIN, predict_starts=True, start_confidence=0.6)


def test_a_due_job_whose_node_frees_in_time_is_held() -> None:
    # The 8-GPU job has waited 21 min (due at 20); the job on n0 has run 2 min, and 60% of
    # 8-GPU jobs that ran 2 min end 8 min later: n0 frees at +8 min, within the 30 min target.
    pend = (job("a", 8, 21 * MIN),)
    run = (_running("r0", "n0", 2 * MIN),)
    r = select_overflow(NOW, pend, full_cluster(1), (), PRED, running=run, durations=MODEL)
    assert r.burst == () and r.burst_total == 0 and r.waiting == 1
    assert r.wake_at == NOW + 30.0  # looked at again next tick
    # Without the predictor, or with it off, the same job bursts.
    assert [j.id for j in select_overflow(NOW, pend, full_cluster(1), (), PRED, running=run).burst] == ["a"]
    off = dataclasses.replace(PRED, predict_starts=False)
    assert [j.id for j in select_overflow(NOW, pend, full_cluster(1), (), off, running=run, durations=MODEL).burst] == ["a"]


@pytest.mark.parametrize(
    "why, waited, elapsed, q",
    [
        ("frees too late for the target", 25 * MIN, 2 * MIN, 0.6),  # +8 min > 30 - 25 - tick
        ("not confident enough", 21 * MIN, 2 * MIN, 0.9),
        ("the running job is a long one", 21 * MIN, 20 * MIN, 0.6),
    ],
)
def test_a_due_job_bursts_when_the_forecast_does_not_start_it_in_time(why: str, waited: float, elapsed: float, q: float) -> None:
    cfg = dataclasses.replace(PRED, start_confidence=q)
    r = select_overflow(NOW, (job("a", 8, waited),), full_cluster(1), (), cfg,
                        running=(_running("r0", "n0", elapsed),), durations=MODEL)
    assert [j.id for j in r.burst] == ["a"], why


def test_a_time_limit_bounds_the_end() -> None:
    # The running job has run 20 min (so by the learnt runs it has 280 min left), but its
    # time limit ends it 5 min from now.
    run = (_running("r0", "n0", 20 * MIN, limit=25 * MIN),)
    r = select_overflow(NOW, (job("a", 8, 21 * MIN),), full_cluster(1), (), PRED, running=run, durations=MODEL)
    assert r.burst == ()


def test_an_older_pending_job_takes_the_freed_node_first() -> None:
    # Two 8-GPU jobs wait; one node frees in time: the older one gets it, the younger bursts.
    pend = (job("old", 8, 21.25 * MIN), job("young", 8, 21 * MIN))
    r = select_overflow(NOW, pend, full_cluster(1), (), PRED, running=(_running("r0", "n0", 2 * MIN),), durations=MODEL)
    assert [j.id for j in r.burst] == ["young"]


def test_younger_small_work_that_fits_a_partial_free_delays_a_whole_node_job() -> None:
    # n0 runs two 4-GPU jobs, one ends soon (+8 min) and one never by the evidence; the 8-GPU
    # job cannot start there, whatever the younger 4-GPU job does.
    runs4 = tuple(sorted([10 * MIN] * 60 + [300 * MIN] * 40))
    m = DurationModel({ALL: runs4, 4: runs4})
    run = (_running("r0", "n0", 2 * MIN, gpus=4), _running("r1", "n0", 20 * MIN, gpus=4))
    nodes = (onprem("n0", used=8),)
    r = select_overflow(NOW, (job("a", 8, 21 * MIN), job("b", 4, 1 * MIN)), nodes, (), PRED, running=run, durations=m)
    assert [j.id for j in r.burst] == ["a"]


def test_a_gang_whose_running_gang_ends_soon_is_not_sent_to_the_cloud_through_decide() -> None:
    # A running 2-node gang ends (by the learnt runs) in 8 min; the pending 8-GPU job waits.
    gang = Job("g", 16, NOW - 3 * MIN, state=JobState.RUNNING, start_time=NOW - 2 * MIN, nodes=2,
               gpus_per_node=8, node_names=("n0", "n1"))
    m = DurationModel({ALL: RUNS, 16: RUNS})
    cfg = dataclasses.replace(CFG, overflow=PRED)
    s = dataclasses.replace(snap([job("a", 8, 21 * MIN)], full_cluster(2), running=[gang]), durations=m)
    assert decide(s, cfg).of(Launch) == []
    assert len(decide(dataclasses.replace(s, durations=None), cfg).of(Launch)) == 1


@pytest.mark.parametrize("waited, held", [(24.75 * MIN, True), (25.5 * MIN, False)])
def test_a_job_is_held_only_while_a_burst_next_tick_still_meets_the_target(waited: float, held: bool) -> None:
    # n0's job has run 8 min: 60% of runs end 2 min later, well within the target either way.
    # But if that fails, a job held at 25.5 min bursts next tick and its instance (4 min boot)
    # would join after 30 min: it is not held.
    r = select_overflow(NOW, (job("a", 8, waited),), full_cluster(1), (), PRED,
                        running=(_running("r0", "n0", 8 * MIN),), durations=MODEL)
    assert (r.burst == ()) is held
