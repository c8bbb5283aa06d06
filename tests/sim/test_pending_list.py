"""The simulator's snapshot hands out the pending jobs from a list it keeps between snapshots
(and the running jobs' views from a dict kept beside the running jobs) (appended on submit, one entry taken out per start, dropped and rebuilt on anything else); it
must always be exactly what rebuilding from the pending dict gives: the same Job objects, in
the same order (priority, then submission), held jobs after them.

Random arrivals, completions, burst nodes joining and leaving (requeues), drains, holds,
releases, priorities and cancels; a snapshot is taken after some steps only, so several changes
pile up between two snapshots.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.domain import Job
from burst.sim.cluster import SimCluster
from burst.sim.trace import TraceJob

step = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from((1, 2, 4, 8, 8, 16)), st.sampled_from(("", "A100", "H100")),
              st.booleans(), st.sampled_from((0.0, 0.0, 1.0, -5.0)), st.integers(600, 20_000), st.sampled_from((0, 0, 0, 1))),
    st.tuples(st.just("advance"), st.integers(0, 8_000)),
    st.tuples(st.just("join"), st.sampled_from(("aws/us-east-1", "azure/eastus")), st.sampled_from(("A100", "H100"))),
    st.tuples(st.just("leave"), st.integers(0, 5)),
    st.tuples(st.just("drain"), st.integers(0, 7)),
    st.tuples(st.just("undrain"), st.integers(0, 7)),
    st.tuples(st.just("hold"), st.integers(0, 40)),
    st.tuples(st.just("release"), st.integers(0, 40)),
    st.tuples(st.just("priority"), st.integers(0, 40), st.integers(-1, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
)


def _rebuilt(c: SimCluster) -> tuple[Job, ...]:
    """What the snapshot held before it kept a list: every pending job's view, dict order."""
    return tuple(sj.job for sj in c._pending.values()) + tuple(sj.job for sj in c._held.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(step, st.booleans(), st.booleans()), min_size=1, max_size=80))
def test_kept_pending_list_is_the_rebuilt_one(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    c = SimCluster(3)
    now, k, joined = 0.0, 0, 0
    for s, schedule, look in steps:
        if s[0] == "submit":
            gpus, model, may_burst, dt, dur, prio = s[1:]
            nodes = gpus // 8 if gpus > 8 else 1
            tj = TraceJob(id=f"j{k:03d}", submit=now, duration=float(dur), gpus=gpus, nodes=nodes,
                          per_node=8 if nodes > 1 else gpus, may_burst=may_burst, gpu_model=model)
            c.submit(tj, max(0.0, now + dt), priority=prio)
            k += 1
        elif s[0] == "advance":
            now += s[1]
            c.complete_until(now)
        elif s[0] == "join":
            c.add_cloud_node(f"burst-{joined}", 8, s[2], s[1], f"i-{joined}")
            joined += 1
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
        elif s[0] == "cancel":
            c.cancel([f"j{s[1]:03d}"])
        if schedule:
            c.schedule(now)
        if look:
            got = c.snapshot().pending
            want = _rebuilt(c)  # after the snapshot: it put the dict in order first
            assert len(got) == len(want)
            assert all(a is b for a, b in zip(got, want, strict=True))
            # The running views come from a dict kept beside the running jobs (SimCluster._rviews):
            # the same views, in the running dict's order, as mapping over the running jobs gives.
            run_got = c.snapshot().running
            run_want = tuple(sj.running_view for sj in c._running.values())
            assert len(run_got) == len(run_want)
            assert all(a is b for a, b in zip(run_got, run_want, strict=True))
    c.schedule(now)
    got = c.snapshot().pending
    assert all(a is b for a, b in zip(got, _rebuilt(c), strict=True)) and len(got) == len(_rebuilt(c))


def test_running_view_follows_a_priority_change() -> None:
    """A running job's new priority shows in the next snapshot, in the job's old place."""
    c = SimCluster(2)
    for k in range(3):
        c.submit(TraceJob(id=f"r{k}", submit=0.0, duration=600.0, gpus=4, nodes=1, per_node=4), float(k))
    c.schedule(10.0)
    before = c.snapshot().running
    assert [j.id for j in before] == ["r0", "r1", "r2"]
    c.set_priority("r1", 5)
    after = c.snapshot().running
    assert [(j.id, j.priority) for j in after] == [("r0", 0), ("r1", 5), ("r2", 0)]
    assert after[1] is c._running["r1"].running_view


def test_pending_tuple_is_kept_while_the_queue_is_unchanged() -> None:
    """A snapshot after changes that leave the queue alone (a completion, a drain) hands out the
    very same pending tuple; an arrival gives a new one."""
    c = SimCluster(1)
    c.submit(TraceJob(id="run", submit=0.0, duration=100.0, gpus=8, nodes=1, per_node=8), 0.0)
    c.schedule(0.0)
    c.submit(TraceJob(id="wait", submit=0.0, duration=100.0, gpus=16, nodes=2, per_node=8), 1.0)
    first = c.snapshot()
    c.complete_until(200.0)
    c.drain_node("onprem-0001", "test")
    second = c.snapshot()
    assert second is not first and not second.running
    assert second.pending is first.pending
    c.submit(TraceJob(id="next", submit=0.0, duration=100.0, gpus=1, nodes=1, per_node=1), 201.0)
    third = c.snapshot()
    assert third.pending is not first.pending
    assert [j.id for j in third.pending] == ["wait", "next"]
