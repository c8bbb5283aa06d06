"""Simulation.run() end to end on small traces: books, cloud and queue agree at the end."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from burst.domain import InstanceState
from burst.ports import Store
from burst.sim.clairvoyant import run_clairvoyant
from burst.sim.runner import SimSettings, Simulation, b1_offers
from burst.sim.trace import TraceJob, bundled_trace_path, load_trace
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from policies.model import OverflowConfig, ScaleInConfig
from policies.reference import NEVER

THRESHOLD = 10 * 60.0
TICK = 30.0
BOOT = 240.0
POLICY = PolicyConfig(
    name="test",
    overflow=OverflowConfig(wait_threshold_s=THRESHOLD),
    scale_in=ScaleInConfig(idle_timeout_s=120.0),
    tick_interval_s=TICK,
)


def synthetic(n: int = 80, seed: int = 11, span_h: float = 8.0) -> list[TraceJob]:
    rng = random.Random(seed)
    jobs = []
    for k in range(n):
        gpus = rng.choice([1, 1, 2, 4, 8, 8, 16])
        nodes = 1 if gpus <= 8 else gpus // 8
        jobs.append(
            TraceJob(f"j{k:03d}", rng.uniform(0, span_h * 3600), rng.uniform(300, 3 * 3600), gpus, nodes=nodes, per_node=gpus if nodes == 1 else 8)
        )
    return sorted(jobs, key=lambda j: (j.submit, j.id))


def _check_end_state(sim: Simulation, res, jobs: list[TraceJob]) -> None:  # type: ignore[no-untyped-def]
    # nothing left running in any cloud, nothing live in the books
    assert all(p.list_instances() == () for p in sim.providers.values())
    assert sim.store.live_instances() == []
    insts = sim.store.instances()
    assert len(insts) >= res.instances
    assert all(i.state is InstanceState.TERMINATED for i in insts)
    # the ledger equals what the clouds billed, to the cent
    assert round(res.ledger_usd, 2) == round(res.cloud_usd, 2)
    assert round(sim.store.spend(since=0.0, now=sim.clock.now()), 2) == round(res.cloud_usd, 2)
    # no job lost: each started once (requeues aside) and finished
    assert res.unfinished == 0
    assert len(res.waits_s) == len(jobs)
    assert res.gpu_hours_used <= res.gpu_hours_paid + 1e-9


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_small_simulation_with_bursting(store_kind: str, tmp_path: Path) -> None:
    jobs = synthetic()
    store: Store
    if store_kind == "memory":
        store = MemoryStore()
    else:
        from burst.store.sql import SqlStore

        store = SqlStore.from_url(f"sqlite:///{tmp_path / 'sim.db'}")
    sim = Simulation(jobs, POLICY, settings=SimSettings(nodes=4, tick_s=TICK, boot_s=BOOT), store=store)
    res = sim.run()
    assert res.instances >= 3, "the scenario must burst"
    assert res.cloud_usd > 0
    _check_end_state(sim, res, jobs)
    # every job started within threshold + boot + two ticks of its submission
    assert max(res.waits_s) <= THRESHOLD + BOOT + 2 * TICK
    # audit: every instance was launched for named jobs and its end is recorded
    for inst in store.instances():
        if inst.launched_at is not None:
            assert inst.for_jobs and inst.terminated_at is not None and inst.terminated_at >= inst.launched_at


def test_never_policy_spends_nothing_and_waits_longer() -> None:
    jobs = synthetic()
    never = Simulation(jobs, NEVER, settings=SimSettings(nodes=4)).run()
    burst = Simulation(jobs, POLICY, settings=SimSettings(nodes=4, tick_s=TICK)).run()
    assert never.instances == 0 and never.cloud_usd == 0.0 and never.ledger_usd == 0.0
    assert never.unfinished == 0
    assert max(never.waits_s) > max(burst.waits_s)


def test_capacity_errors_and_spot_reclaims_keep_the_books_straight() -> None:
    jobs = synthetic(seed=5)
    import dataclasses

    policy = dataclasses.replace(POLICY, selection=dataclasses.replace(POLICY.selection, allow_spot=True))
    sim = Simulation(
        jobs,
        policy,
        settings=SimSettings(nodes=4, tick_s=TICK, capacity_error_rate=0.3, spot_interrupt_mean_s=2 * 3600.0, seed=2),
        offers=b1_offers(spot=True),
    )
    res = sim.run()
    assert res.capacity_errors > 0 and res.interruptions > 0
    assert all(p.list_instances() == () for p in sim.providers.values())
    assert sim.store.live_instances() == []
    assert res.unfinished == 0 and len(res.waits_s) == len(jobs)
    # a reclaim is booked when the next tick notices it: at most one tick's price over the bill
    slack = sum(i.price_per_hour * TICK / 3600 for i in sim.store.instances() if i.market == "spot")
    assert res.cloud_usd - 0.005 <= res.ledger_usd <= res.cloud_usd + slack


def test_same_run_twice_is_identical() -> None:
    jobs = synthetic(n=40)
    a = Simulation(jobs, POLICY, settings=SimSettings(nodes=4, capacity_error_rate=0.2, seed=1), record_plans=True).run()
    b = Simulation(jobs, POLICY, settings=SimSettings(nodes=4, capacity_error_rate=0.2, seed=1), record_plans=True).run()
    assert a.plans == b.plans and a.waits_s == b.waits_s and a.cloud_usd == b.cloud_usd


# ---- clairvoyant -------------------------------------------------------------------------------


def test_clairvoyant_on_a_hand_made_trace() -> None:
    # one 8-GPU node. A fills it for an hour. B would wait 3590 s > 30 min: cloud at once.
    # C would wait 600 s on-prem (A ends at 3600): it stays. D (gang of 2) can never fit: cloud.
    jobs = [
        TraceJob("A", 0.0, 3600.0, 8, per_node=8),
        TraceJob("B", 10.0, 600.0, 8, per_node=8),
        TraceJob("C", 3000.0, 100.0, 4, per_node=4),
        TraceJob("D", 3100.0, 1800.0, 16, nodes=2, per_node=8),
    ]
    r = run_clairvoyant(jobs, nodes=1, gpus_per_node=8, price_per_gpu_hour=2.0)
    assert r.cloud_jobs == 2
    assert r.cloud_gpu_hours == pytest.approx((8 * 600 + 16 * 1800) / 3600)
    assert r.cloud_usd == pytest.approx(r.cloud_gpu_hours * 2.0)
    assert sorted(r.waits_s) == [0.0, 0.0, 0.0, 600.0]


def test_clairvoyant_everything_on_prem_when_it_fits() -> None:
    jobs = [TraceJob(f"j{k}", k * 10.0, 100.0, 1, per_node=1) for k in range(8)]
    r = run_clairvoyant(jobs, nodes=1, gpus_per_node=8, price_per_gpu_hour=2.0)
    assert r.cloud_jobs == 0 and r.cloud_usd == 0.0 and r.waits_s == [0.0] * 8


@pytest.mark.parametrize(("nodes", "days"), [(40, 2), (20, 3)])
def test_clairvoyant_window_extremes_on_the_bundled_trace(nodes: int, days: float) -> None:
    jobs = load_trace(bundled_trace_path(), days=days)
    # an endless window: nothing bursts, every job waits for on-prem
    patient = run_clairvoyant(jobs, nodes=nodes, gpus_per_node=8, price_per_gpu_hour=1.0, window_s=1e12)
    assert patient.cloud_jobs == 0 and patient.cloud_usd == 0.0 and len(patient.waits_s) == len(jobs)
    assert max(patient.waits_s) > 3600  # the scenario is congested
    # a zero window: whatever cannot start at once goes to the cloud, nobody waits
    eager = run_clairvoyant(jobs, nodes=nodes, gpus_per_node=8, price_per_gpu_hour=1.0, window_s=0.0)
    assert eager.cloud_jobs > 0 and set(eager.waits_s) == {0.0} and len(eager.waits_s) == len(jobs)
    # the default 30 min window lies in between, and pays gpus x duration x price exactly
    mid = run_clairvoyant(jobs, nodes=nodes, gpus_per_node=8, price_per_gpu_hour=1.0)
    assert 0 < mid.cloud_jobs < len(jobs)  # (not monotone in the window: greedy placement)
    assert mid.cloud_usd == pytest.approx(mid.cloud_gpu_hours)


@pytest.mark.slow
def test_b1_full_trace_books_and_targets() -> None:
    """The full 59-day itp-c04 replay at 80 nodes under the default policy (B1 headline)."""
    from policies.reference import BURST

    jobs = load_trace(bundled_trace_path())
    sim = Simulation(jobs, BURST, settings=SimSettings(nodes=80))
    res = sim.run()
    assert res.unfinished == 0 and len(res.waits_s) == len(jobs)
    assert round(res.ledger_usd, 2) == round(res.cloud_usd, 2)
    assert sim.store.live_instances() == []
    assert res.figures()["p95_wait_min"] <= 30.0
