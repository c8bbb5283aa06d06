"""policies/overflow.py: which pending work bursts, checked directly and through decide()."""

from __future__ import annotations

import dataclasses

import pytest

from burst.domain import InstanceState, Launch, Terminate, Undrain
from policies import decide
from policies.model import OverflowConfig
from policies.overflow import select_overflow
from tests.policies.helpers import (
    A100_1,
    A100_8_AZ1,
    A100_8_AZURE,
    A100_8_WEST,
    CFG,
    MIN,
    NOW,
    OV,
    cloud_node,
    full_cluster,
    instance,
    job,
    onprem,
    snap,
)

# (case, pending, nodes, instances, expected burst ids, expected covered, expected covered_cloud)
CASES = [
    ("below-threshold-waits", [job("a", 1, 5 * MIN)], full_cluster(), [], [], 0, 0),
    ("over-threshold-no-capacity-bursts", [job("a", 1, 25 * MIN)], full_cluster(), [], ["a"], 0, 0),
    ("exactly-at-threshold-bursts", [job("a", 1, 20 * MIN)], full_cluster(), [], ["a"], 0, 0),
    ("fits-free-onprem", [job("a", 4, 2 * 60 * MIN)], (*full_cluster(), onprem("free", used=4)), [], [], 1, 0),
    ("too-big-for-partly-free-onprem", [job("a", 8, 60 * MIN)], (*full_cluster(), onprem("free", used=4)), [], ["a"], 0, 0),
    (
        "first-fit-in-submit-order",
        [job("old", 4, 60 * MIN), job("new", 4, 50 * MIN)],
        (*full_cluster(), onprem("free", used=4)),
        [],
        ["new"],
        1,
        0,
    ),
    ("non-burstable-never-bursts", [job("a", 1, 7 * 24 * 60 * MIN, may_burst=False)], full_cluster(), [], [], 0, 0),
    (
        "covered-by-launching-instance",
        [job("a", 8, 60 * MIN)],
        full_cluster(),
        [instance("i1", InstanceState.LAUNCHING)],
        [],
        1,
        1,
    ),
    ("covered-by-planned-instance", [job("a", 8, 60 * MIN)], full_cluster(), [instance("i1", InstanceState.PLANNED, launched_at=None)], [], 1, 1),
    ("covered-by-running-instance", [job("a", 8, 60 * MIN)], full_cluster(), [instance("i1", InstanceState.RUNNING)], [], 1, 1),
    (
        "one-in-flight-instance-covers-one-job-only",
        [job("a", 8, 60 * MIN), job("b", 8, 59 * MIN)],
        full_cluster(),
        [instance("i1", InstanceState.LAUNCHING)],
        ["b"],
        1,
        1,
    ),
    (
        "in-flight-capacity-not-for-non-burstable",
        [job("a", 8, 60 * MIN, may_burst=False)],
        full_cluster(),
        [instance("i1", InstanceState.LAUNCHING)],
        [],
        0,
        0,
    ),
    (
        "wrong-model-in-flight-does-not-cover",
        [job("a", 8, 60 * MIN, gpu_model="H100")],
        full_cluster(),
        [instance("i1", InstanceState.LAUNCHING)],
        ["a"],
        0,
        0,
    ),
]


@pytest.mark.parametrize(("pending", "nodes", "instances", "burst", "covered", "covered_cloud"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_select_overflow(pending, nodes, instances, burst, covered, covered_cloud) -> None:  # type: ignore[no-untyped-def]
    r = select_overflow(NOW, tuple(pending), tuple(nodes), tuple(instances), OV)
    assert [j.id for j in r.burst] == burst
    assert (r.covered, r.covered_cloud) == (covered, covered_cloud)


def test_joined_idle_burst_node_covers_and_draining_is_taken_back_only_for_work_due_now() -> None:
    joined = instance("j", InstanceState.JOINED, idle_since=NOW - 60)
    r = select_overflow(NOW, (job("a", 8, 60 * MIN),), (*full_cluster(), cloud_node(joined)), (joined,), OV)
    assert r.burst == () and r.covered_cloud == 1 and r.undrain == {}
    draining = instance("d", InstanceState.DRAINING, idle_since=NOW - 600)
    nodes = (*full_cluster(), cloud_node(draining, schedulable=False))
    # a job past its threshold: the draining node is taken back instead of a launch
    r = select_overflow(NOW, (job("a", 8, 60 * MIN),), nodes, (draining,), OV)
    assert r.burst == () and sum(r.undrain.values()) == 1
    # a job still below its threshold does not stop the drain (it may start on-prem)
    r = select_overflow(NOW, (job("a", 8, 1 * MIN),), nodes, (draining,), OV)
    assert r.burst == () and r.undrain == {} and r.waiting == 1
    # too big for the draining node: it bursts
    r = select_overflow(NOW, (job("g", 16, 60 * MIN, nodes=2),), nodes, (draining,), OV)
    assert [j.id for j in r.burst] == ["g"] and r.undrain == {}


def test_undrain_through_decide_cancels_the_terminate() -> None:
    # Two 4-GPU jobs due now; one draining 8-GPU node with 4 GPUs still busy, one idle draining
    # node. Both nodes are taken back (4 free + 8 free), nothing launches, nothing terminates.
    busy = instance("d1", InstanceState.DRAINING, idle_since=None)
    idle = instance("d2", InstanceState.DRAINING, idle_since=NOW - 600)
    nodes = (*full_cluster(), cloud_node(busy, used=4, schedulable=False), cloud_node(idle, schedulable=False))
    p = decide(snap([job("a", 4, 60 * MIN), job("b", 4, 60 * MIN)], nodes, [busy, idle]), CFG)
    assert sorted(a.instance_id for a in p.of(Undrain)) == ["d1", "d2"]
    assert p.of(Launch) == [] and p.of(Terminate) == []
    # one job: best fit takes back the node with 4 free; the idle one still goes
    p = decide(snap([job("a", 4, 60 * MIN)], nodes, [busy, idle]), CFG)
    assert [a.instance_id for a in p.of(Undrain)] == ["d1"] and [a.instance_id for a in p.of(Terminate)] == ["d2"]
    # with nothing pending the idle draining node is terminated as usual
    p = decide(snap([], nodes, [busy, idle]), CFG)
    assert [a.instance_id for a in p.of(Terminate)] == ["d2"] and p.of(Undrain) == []


def test_waiting_job_sets_wake_at_its_threshold() -> None:
    p = decide(snap([job("a", 1, 5 * MIN), job("b", 1, 12 * MIN)], full_cluster()), CFG)
    assert p.of(Launch) == []
    assert p.wake_at == NOW - 12 * MIN + 20 * MIN  # b crosses first


def test_gang_threshold_is_separate() -> None:
    cfg = OverflowConfig(wait_threshold_s=20 * MIN, gang_wait_threshold_s=60 * MIN)
    r = select_overflow(NOW, (job("g", 16, 30 * MIN, nodes=2), job("s", 8, 30 * MIN)), full_cluster(), (), cfg)
    assert [j.id for j in r.burst] == ["s"]
    assert r.wake_at == NOW + 30 * MIN


def test_disabled_overflow_never_bursts() -> None:
    r = select_overflow(NOW, (job("a", 1, 10_000 * MIN),), full_cluster(), (), OverflowConfig(enabled=False))
    assert r.burst == () and r.wake_at is None


def test_over_threshold_job_launches_through_decide() -> None:
    p = decide(snap([job("a", 8, 25 * MIN)], full_cluster()), CFG)
    (lc,) = p.of(Launch)
    assert lc.for_jobs == ("a",) and lc.offer.gpu_count >= 8
    assert "a" in lc.reason and "threshold" in lc.reason


def test_in_flight_instance_prevents_second_launch_through_decide() -> None:
    first = decide(snap([job("a", 8, 25 * MIN)], full_cluster()), CFG)
    (lc,) = first.of(Launch)
    inst = instance(lc.intent_id, InstanceState.LAUNCHING, lc.offer, launched_at=NOW)
    later = decide(snap([job("a", 8, 26 * MIN)], full_cluster(), [inst], now=NOW + MIN), CFG)
    assert later.of(Launch) == []


# ---- gangs: whole nodes, one location --------------------------------------------------------


def _gang() -> list:  # type: ignore[type-arg]
    return [job("g", 16, 60 * MIN, nodes=2)]


def test_gang_not_covered_by_partly_free_onprem_nodes() -> None:
    nodes = (onprem("a", used=4), onprem("b", used=4), onprem("c", used=4))  # 12 GPUs free, no whole node
    r = select_overflow(NOW, tuple(_gang()), nodes, (), OV)
    assert [j.id for j in r.burst] == ["g"]


def test_gang_covered_by_two_free_onprem_nodes() -> None:
    nodes = (onprem("a", used=0), onprem("b", used=0), onprem("c"))
    r = select_overflow(NOW, tuple(_gang()), nodes, (), OV)
    assert r.burst == () and r.covered == 1 and r.covered_cloud == 0


def _needs(r, jid: str) -> tuple[str, int] | None:  # type: ignore[no-untyped-def]
    """(where, missing nodes) when ``jid`` needs new capacity: a whole gang ("", n) or a top-up."""
    if any(j.id == jid for j in r.burst):
        return ("", next(j.nodes for j in r.burst if j.id == jid))
    for j, where, missing in r.gang_topups:
        if j.id == jid:
            return (where, missing)
    return None


@pytest.mark.parametrize(
    "other",
    [A100_8_WEST, A100_8_AZURE],
    ids=["other-region", "other-cloud"],
)
def test_gang_is_not_covered_across_regions(other) -> None:  # type: ignore[no-untyped-def]
    east = instance("e", InstanceState.LAUNCHING, A100_8_AZ1)
    far = instance("w", InstanceState.LAUNCHING, other)
    r = select_overflow(NOW, tuple(_gang()), full_cluster(), (east, far), OV)
    assert r.covered_cloud == 0
    need = _needs(r, "g")
    assert need is not None
    where, missing = need
    # either a whole new gang, or a top-up of exactly the one node missing in one region
    assert (where, missing) in {("", 2), ("aws/us-east-1", 1), (f"{other.cloud}/{other.region}", 1)}


def _own(iid: str, state: InstanceState, o=A100_8_AZ1):  # type: ignore[no-untyped-def]
    """An instance launched for gang g (its launch group)."""
    return instance(iid, state, o, for_jobs=("g",), gang_id="g-group")


def test_gang_top_up_launches_only_in_the_region_it_counts_on() -> None:
    east = _own("e", InstanceState.LAUNCHING)
    p = decide(snap(_gang(), full_cluster(), [east], (A100_8_AZ1, A100_8_WEST, A100_8_AZURE)), CFG)
    launches = p.of(Launch)
    assert len(launches) == 1
    assert launches[0].offer.location_key == "aws/us-east-1" and launches[0].for_jobs == ("g",)
    # when that region has nothing left to sell, a whole gang goes elsewhere
    p = decide(snap(_gang(), full_cluster(), [east], (A100_8_AZ1, A100_8_WEST), backoff={A100_8_AZ1.key: NOW + 60}), CFG)
    launches = p.of(Launch)
    assert len(launches) == 2 and {lc.offer.location_key for lc in launches} == {"aws/us-west-2"}


def test_gang_covered_by_two_of_its_own_instances_in_one_region() -> None:
    a = _own("e1", InstanceState.LAUNCHING)
    b = _own("e2", InstanceState.RUNNING)
    r = select_overflow(NOW, tuple(_gang()), full_cluster(), (a, b), OV)
    assert r.burst == () and r.covered_cloud == 1
    # Booting instances launched for other work are not the gang's: they join at other times
    # and their own jobs take them. The gang launches whole, and they stay for their jobs.
    a2 = instance("e1", InstanceState.LAUNCHING, A100_8_AZ1)
    b2 = instance("e2", InstanceState.RUNNING, A100_8_AZ1)
    r = select_overflow(NOW, tuple(_gang()), full_cluster(), (a2, b2), OV)
    assert _needs(r, "g") == ("", 2)


def test_booting_gang_instances_are_given_back_when_the_gang_started_elsewhere() -> None:
    a = _own("e1", InstanceState.LAUNCHING)
    b = _own("e2", InstanceState.LAUNCHING)
    a = dataclasses.replace(a, launched_at=NOW - 30, created_at=NOW - 31)
    b = dataclasses.replace(b, launched_at=NOW - 30, created_at=NOW - 31)
    # g is still pending: nothing to cancel
    p = decide(snap(_gang(), full_cluster(), [a, b]), CFG)
    assert p.of(Terminate) == []
    # g missing from one snapshot (its pods being recreated, say) is not a reason to cancel
    p = decide(snap([], full_cluster(), [a, b]), CFG)
    assert p.of(Terminate) == []
    # g seen running elsewhere: both are given back before they join
    p = decide(snap([], full_cluster(), [a, b], running=[job("g", 16, 40 * MIN, nodes=2)]), CFG)
    assert sorted(t.instance_id for t in p.of(Terminate)) == ["e1", "e2"]


def test_the_last_pod_of_a_partly_placed_gang_counts_on_the_gangs_booting_instance() -> None:
    # A Job of 4 pods, 3 already bound: what is pending is one 8-GPU pod under the gang's id.
    # The gang's 4th instance, still booting, is its capacity: no new launch.
    last = dataclasses.replace(_own("e4", InstanceState.LAUNCHING), launched_at=NOW - 60, created_at=NOW - 61)
    p = decide(snap([job("g", 8, 30 * MIN)], full_cluster(), [last]), CFG)
    assert p.of(Launch) == [] and p.of(Terminate) == []


def test_a_recreated_gang_of_another_shape_is_not_held_to_the_old_instances() -> None:
    # g's old instances are 1-GPU ones; g now wants 8 GPUs per node: it launches its own.
    small = [instance(f"s{k}", InstanceState.LAUNCHING, A100_1, for_jobs=("g",), gang_id="old") for k in range(2)]
    r = select_overflow(NOW, tuple(_gang()), full_cluster(), tuple(small), OV)
    assert _needs(r, "g") == ("", 2)


def test_gang_mixing_onprem_and_cloud_is_not_covered() -> None:
    a = _own("e1", InstanceState.LAUNCHING)
    r = select_overflow(NOW, tuple(_gang()), (*full_cluster(), onprem("free", used=0)), (a,), OV)
    assert r.covered == 0
    # the free on-prem node is not half of the gang: it needs one more node next to e1
    assert _needs(r, "g") == ("aws/us-east-1", 1)
