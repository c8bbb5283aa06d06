"""The simulator's snapshot keeps each node's view from one snapshot to the next and rebuilds
only the nodes that changed (SimCluster._views/_dirty). What it hands out must always be what
building every view afresh gives, so a consumer may treat "the same Node object as last time"
as "this node did not change" (the controller's incremental pools can rely on it).

Random arrivals, completions, burst nodes joining and leaving, drains (with reasons),
undrains, reservations made and deleted, holds and cancels; a snapshot after some steps only.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.domain import Node
from burst.sim.cluster import RESERVATION_LABEL, SimCluster
from burst.sim.trace import TraceJob

step = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from((1, 2, 4, 8, 16)), st.booleans(), st.integers(600, 20_000)),
    st.tuples(st.just("advance"), st.integers(0, 8_000)),
    st.tuples(st.just("join"), st.sampled_from(("aws/us-east-1", "azure/eastus"))),
    st.tuples(st.just("leave"), st.integers(0, 5)),
    st.tuples(st.just("drain"), st.integers(0, 7), st.sampled_from(("a", "b"))),
    st.tuples(st.just("undrain"), st.integers(0, 7)),
    st.tuples(st.just("reserve"), st.integers(0, 2)),
    st.tuples(st.just("unreserve"),),
    st.tuples(st.just("hold"), st.integers(0, 30)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
)


def _fresh(c: SimCluster) -> tuple[Node, ...]:
    """Every live node's view built now, in index order (what the snapshot did before it kept views)."""
    return tuple(
        Node(
            name=n.name, gpus=n.gpus, gpus_used=n.gpus - n.free, gpu_model=n.model,
            schedulable=n.schedulable and not n.reserved, instance_id=n.instance_id, running_jobs=len(n.jobs),
            labels=({RESERVATION_LABEL: n.reserved} if n.reserved else {})
            | ({"reason": n.reason} if n.reason and not n.schedulable else {}),
        )
        for n in c.nodes if n.alive
    )


def _name(i: int) -> str:
    return f"onprem-{i % 3 + 1:04d}" if i < 3 else f"burst-{i - 3}"


def _drive(steps: list[tuple], look: Callable[[SimCluster], None]) -> None:  # type: ignore[type-arg]
    """Apply ``steps`` to a 3-node cluster, calling ``look`` after the steps that ask for it."""
    c = SimCluster(3)
    now, k, joined = 0.0, 0, 0
    for s, looking in steps:
        if s[0] == "submit":
            gpus, may_burst, dur = s[1:]
            nodes = gpus // 8 if gpus > 8 else 1
            c.submit(TraceJob(id=f"j{k:03d}", submit=now, duration=float(dur), gpus=gpus, nodes=nodes,
                              per_node=8 if nodes > 1 else gpus, may_burst=may_burst), now)
            k += 1
        elif s[0] == "advance":
            now += s[1]
            c.complete_until(now)
        elif s[0] == "join":
            c.add_cloud_node(f"burst-{joined}", 8, "A100", s[1], f"i-{joined}")
            joined += 1
        elif s[0] == "leave":
            c.remove_node(f"burst-{s[1]}")
        elif s[0] == "drain":
            c.drain_node(_name(s[1]), s[2])
        elif s[0] == "undrain":
            c.undrain_node(_name(s[1]), "")
        elif s[0] == "reserve":
            if "r" not in c.reservations:
                c.create_reservation("r", None, 3600.0, nodes=[f"onprem-{s[1] + 1:04d}"])
        elif s[0] == "unreserve":
            c.delete_reservation("r")
        elif s[0] == "hold":
            c.hold([f"j{s[1]:03d}"])
        elif s[0] == "cancel":
            c.cancel([f"j{s[1]:03d}"])
        c.schedule(now)
        if looking:
            look(c)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(step, st.booleans()), min_size=1, max_size=60))
def test_kept_node_views_are_the_fresh_ones(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    def look(c: SimCluster) -> None:
        assert c.snapshot().nodes == _fresh(c)

    _drive(steps, look)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(step, st.booleans()), min_size=1, max_size=60))
def test_unchanged_cloud_version_means_the_same_burst_node_views(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    """``cloud_version`` (the simulator's idle-tick test, burst/sim/runner.py) equal between two
    snapshots: every burst node of the second is the very object of the first, and none came or
    went. On-prem changes do not count."""
    seen: list[tuple[int, tuple[Node, ...]]] = []

    def look(c: SimCluster) -> None:
        burst_nodes = tuple(n for n in c.snapshot().nodes if n.instance_id)
        assert burst_nodes == tuple(n for n in _fresh(c) if n.instance_id)
        if seen and seen[-1][0] == c.cloud_version:
            before = seen[-1][1]
            assert len(before) == len(burst_nodes) and all(a is b for a, b in zip(before, burst_nodes, strict=True))
        seen.append((c.cloud_version, burst_nodes))

    _drive(steps, look)


def test_an_onprem_change_leaves_cloud_version_alone() -> None:
    c = SimCluster(2)
    c.add_cloud_node("burst-0", 8, "A100", "aws/us-east-1", "i-0")
    v = c.cloud_version
    c.submit(TraceJob(id="j", submit=0.0, duration=60.0, gpus=8, may_burst=False), 0.0)
    c.schedule(0.0)
    c.drain_node("onprem-0002", "maintenance")
    assert c.cloud_version == v and c.running_count == 1
    c.drain_node("burst-0", "spot notice")
    assert c.cloud_version > v


def test_a_change_on_one_node_keeps_the_other_views() -> None:
    """Unchanged nodes are handed out as the very same objects: only the changed one is new."""
    c = SimCluster(4)
    before = c.snapshot().nodes
    c.drain_node("onprem-0002", "maintenance")
    after = c.snapshot().nodes
    assert [a is b for a, b in zip(before, after, strict=True)] == [True, False, True, True]
    assert after[1].labels == {"reason": "maintenance"} and not after[1].schedulable
