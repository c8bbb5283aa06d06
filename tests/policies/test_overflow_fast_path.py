"""The overflow fast path (exhausted tail split by threshold, walk skipped when overflow is off,
listing cut at the launch limit) decides exactly what the full walk decides.

A contract, not a one-off: random small snapshots (on-prem nodes partly free, joined, held,
draining and booting burst capacity, gangs owning instances, ties in submit time, unsorted
queues) and random overflow configs, checked field by field against ``fast=False``.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.domain import GANG_HOLD_LABEL, Instance, InstanceState, Job, Node, Purpose
from policies import decide
from policies.model import OverflowConfig, PolicyConfig
from policies.overflow import OverflowResult, select_overflow
from tests.policies.helpers import A100_8_AZ1, A100_8_AZURE, A100_8_WEST, MIN, NOW, instance, job, snap

OFFERS = (A100_8_AZ1, A100_8_WEST, A100_8_AZURE)
MODELS = ("", "A100", "H100")


@st.composite
def worlds(draw: st.DrawFn) -> tuple[tuple[Job, ...], tuple[Node, ...], tuple[Instance, ...], tuple[Job, ...], OverflowConfig]:
    n_jobs = draw(st.integers(0, 40))
    pending: list[Job] = []
    for k in range(n_jobs):
        gang = draw(st.booleans()) and draw(st.booleans())
        nodes = draw(st.integers(2, 3)) if gang else 1
        gpus = 8 * nodes if gang else draw(st.sampled_from((1, 2, 4, 8)))
        waited = draw(st.sampled_from((0.0, 5 * MIN, 10 * MIN, 19 * MIN, 20 * MIN, 25 * MIN, 60 * MIN)))
        pending.append(job(f"j{k:03d}", gpus, waited, nodes=nodes, may_burst=draw(st.integers(0, 5)) > 0,
                           gpu_model=draw(st.sampled_from(MODELS))))
    if draw(st.booleans()):
        pending = draw(st.permutations(pending))
    gangs = [j for j in pending if j.is_gang]
    nodes: list[Node] = []
    for k in range(draw(st.integers(0, 6))):
        used = draw(st.sampled_from((8, 8, 8, 7, 6, 4, 0)))
        nodes.append(Node(f"n{k}", 8, used, draw(st.sampled_from(("A100", "H100"))), running_jobs=1 if used else 0))
    instances: list[Instance] = []
    for k in range(draw(st.integers(0, 8))):
        state = draw(st.sampled_from((InstanceState.PLANNED, InstanceState.LAUNCHING, InstanceState.RUNNING,
                                      InstanceState.JOINED, InstanceState.DRAINING)))
        for_jobs: tuple[str, ...] = ()
        gang_id = ""
        if gangs and draw(st.booleans()):
            g = draw(st.sampled_from(gangs))
            for_jobs, gang_id = (g.id,), f"g-{g.id}"
        elif pending and draw(st.booleans()):
            for_jobs = (draw(st.sampled_from(pending)).id,)
        purpose = Purpose.ON_DEMAND if draw(st.integers(0, 9)) == 0 else Purpose.OVERFLOW
        inst = instance(f"i{k}", state, draw(st.sampled_from(OFFERS)), for_jobs=for_jobs, gang_id=gang_id, purpose=purpose)
        instances.append(inst)
        if state in (InstanceState.JOINED, InstanceState.DRAINING) or (state is InstanceState.RUNNING and draw(st.booleans())):
            used = draw(st.sampled_from((0, 0, 4, 8)))
            held = bool(gang_id) and draw(st.booleans())
            nodes.append(Node(f"burst-{inst.id}", 8, used, inst.gpu_model, schedulable=draw(st.integers(0, 4)) > 0,
                              instance_id=inst.id, running_jobs=1 if used else 0,
                              labels={GANG_HOLD_LABEL: "1"} if held else {}))
    running = tuple(
        dataclasses.replace(j, id=j.id + "-r") if draw(st.booleans()) else j
        for j in draw(st.lists(st.sampled_from(gangs), max_size=2, unique_by=lambda j: j.id)) if gangs
    ) if gangs else ()
    # some running jobs are pending gangs' ids seen running (stray holds, gang surplus)
    pending_t = tuple(j for j in pending if not any(r.id == j.id for r in running) or draw(st.booleans()))
    cfg = OverflowConfig(
        enabled=draw(st.integers(0, 3)) > 0,
        wait_threshold_s=draw(st.sampled_from((None, 20 * MIN, 0.0))),
        gang_wait_threshold_s=draw(st.sampled_from((None, None, 10 * MIN, 30 * MIN))),
    )
    return pending_t, tuple(nodes), tuple(instances), running, cfg


def _same(fast: OverflowResult, full: OverflowResult, *, counted: bool) -> None:
    assert [j.id for j in fast.burst] == [j.id for j in full.burst]
    assert fast.burst_total == len(full.burst) == full.burst_total
    assert [(j.id, w, m) for j, w, m in fast.gang_topups] == [(j.id, w, m) for j, w, m in full.gang_topups]
    assert (fast.threshold_s, fast.waiting, fast.wake_at) == (full.threshold_s, full.waiting, full.wake_at)
    assert fast.surplus_in_flight == full.surplus_in_flight
    assert fast.idle_joined_left == full.idle_joined_left
    assert fast.gang_surplus == full.gang_surplus
    assert fast.reserved == full.reserved
    assert fast.release == full.release
    assert fast.undrain == full.undrain
    if counted:
        assert (fast.covered, fast.covered_cloud) == (full.covered, full.covered_cloud)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.integers(0, 6))
def test_fast_path_decides_as_the_full_walk(world, limit: int) -> None:  # type: ignore[no-untyped-def]
    pending, nodes, instances, running, cfg = world
    full = select_overflow(NOW, pending, nodes, instances, cfg, running=running, fast=False)
    fast = select_overflow(NOW, pending, nodes, instances, cfg, running=running, tail_min=0)
    # Overflow off with no burst capacity: the walk is skipped and coverage is not counted.
    _same(fast, full, counted=cfg.enabled)
    cut = select_overflow(NOW, pending, nodes, instances, cfg, running=running, limit=limit, tail_min=0)
    assert [j.id for j in cut.burst] == [j.id for j in full.burst][:limit]
    assert cut.burst_total == len(full.burst)
    assert (cut.waiting, cut.wake_at, cut.gang_topups, cut.release) == (full.waiting, full.wake_at, full.gang_topups, full.release)


def test_exhausted_tail_is_split_without_visiting_it() -> None:
    """Capacity for one job, then 10,000 more: the tail is split by the threshold alone (due,
    waiting and the wake time are those of the walk), and only the first jobs are listed."""
    free = Node("n0", 8, 7, "A100")
    old = tuple(job(f"a{k:05d}", 1, 60 * MIN - k * 0.01) for k in range(6000))
    young = tuple(job(f"b{k:05d}", 1, 10 * MIN - k * 0.01) for k in range(4000))
    cfg = OverflowConfig(wait_threshold_s=20 * MIN)
    full = select_overflow(NOW, old + young, (free,), (), cfg, fast=False)
    fast = select_overflow(NOW, old + young, (free,), (), cfg, limit=100)
    assert fast.covered == full.covered == 1
    assert fast.burst_total == len(full.burst) == 5999
    assert [j.id for j in fast.burst] == [j.id for j in full.burst[:100]]
    assert (fast.waiting, fast.wake_at) == (full.waiting, full.wake_at) == (4000, NOW - 10 * MIN + 20 * MIN)


def test_decide_plans_the_same_with_a_listing_cut_at_the_launch_limit() -> None:
    """decide() lists only room x widest due jobs; its Plan (launches and the 'wait for a later
    tick' note) is the one a full listing gives."""
    pending = tuple(job(f"a{k:04d}", 1, 60 * MIN - k) for k in range(500))
    cfg = PolicyConfig(overflow=OverflowConfig(wait_threshold_s=20 * MIN, max_launches_per_tick=3))
    s = snap(pending, (Node("n0", 8, 8, "A100"),), (), OFFERS)
    plan = decide(s, cfg)
    launches = [a for a in plan.actions if type(a).__name__ == "Launch"]
    assert len(launches) == 3
    assert plan.notes == (f"{500 - 3 * 8} job(s) past the threshold wait for a later tick (launch limits)",)
