"""The run-time distribution the controller learns from finished jobs (burst/durations.py)."""

from __future__ import annotations

import dataclasses

import pytest

from burst.domain import Job, JobState, QueueSnapshot
from burst.durations import DurationLearner
from policies.remaining import ALL
from tests.core.world import POLICY, T0, TICK, World


def _run(jid: str, start: float, gpus: int = 1) -> Job:
    return Job(jid, gpus, start - 5, state=JobState.RUNNING, start_time=start, node_names=("n0",))


def test_a_job_that_leaves_the_running_set_finished_and_its_run_time_is_learnt() -> None:
    lr = DurationLearner()
    lr.observe(100.0, QueueSnapshot((), (_run("a", 40.0), _run("b", 90.0, gpus=8)), ()))
    assert lr.observe(130.0, QueueSnapshot((), (_run("b", 90.0, gpus=8),), ())) == 1
    assert lr.observe(400.0, QueueSnapshot((), (), ())) == 1
    m = lr.model()
    assert m.samples[ALL] == (90.0, 310.0)  # a: 40 -> seen gone at 130; b: 90 -> 400
    assert m.samples[1] == (90.0,) and m.samples[8] == (310.0,)


def test_a_requeued_job_did_not_finish() -> None:
    lr = DurationLearner()
    lr.observe(100.0, QueueSnapshot((), (_run("a", 40.0),), ()))
    back = Job("a", 1, 35.0)  # pending again: preempted or requeued
    assert lr.observe(130.0, QueueSnapshot((back,), (), ())) == 0
    assert lr.finished == 0


def test_the_window_keeps_the_most_recent_runs_sorted() -> None:
    lr = DurationLearner(window=3)
    for d in (50.0, 10.0, 30.0, 20.0):
        lr.record(d, 1)
    assert lr.model().samples[ALL] == (10.0, 20.0, 30.0)  # 50 (the oldest) has gone


def test_the_controller_learns_finishes_from_its_queue_observations() -> None:
    w = World(nodes=1, policy=dataclasses.replace(POLICY, overflow=dataclasses.replace(POLICY.overflow, predict_starts=True)))
    for k in range(3):
        w.submit(f"j{k}", 1, duration=60.0 * (k + 1), at=T0)
    w.run(T0 + 10 * TICK)
    snap = w.controller.last.snapshot  # type: ignore[union-attr]
    assert snap is not None and snap.durations is not None
    # Finishes are seen on the tick grid: at most one tick late, never early.
    for got, true in zip(snap.durations.samples[ALL], (60.0, 120.0, 180.0), strict=True):
        assert true <= got < true + TICK + 1e-9
    assert w.controller.durations.finished == pytest.approx(3)


def test_without_the_forecast_the_controller_learns_nothing_and_passes_no_model() -> None:
    w = World(nodes=1)  # predict_starts off (the default)
    w.submit("j0", 1, duration=60.0, at=T0)
    w.run(T0 + 5 * TICK)
    snap = w.controller.last.snapshot  # type: ignore[union-attr]
    assert snap is not None and snap.durations is None and w.controller.durations.finished == 0
