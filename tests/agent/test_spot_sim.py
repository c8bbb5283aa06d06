"""Spot notices in the simulator: notice -> checkpoint -> drain -> requeue at the head of the line
-> replacement before the reclaim -> the reclaim closes the instance as LOST, not an error; no
work lost beyond the last checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from burst.controller import Controller
from burst.domain import InstanceState, Job, JobState, Market, QueueSnapshot
from burst.ports import Store
from burst.sim.runner import SimSettings, Simulation, b1_offers
from burst.sim.trace import TraceJob
from burst.sim.world import TRACE_EPOCH
from burst.store.sql import SqlStore
from policies import PolicyConfig
from policies.model import SelectionConfig
from policies.overflow import base_threshold
from policies.spot import NOTICE_LEAD_S

TICK = 30.0
POLICY = PolicyConfig(selection=SelectionConfig(allow_spot=True))


def _spot_offers(cloud: str) -> list:
    return [o for o in b1_offers(spot=True) if o.market is Market.SPOT and o.cloud == cloud and o.gpu_count == 8]


def _drive(sim: Simulation, until: float, stop=lambda: False) -> float:  # noqa: ANN001
    """The daemon's loop at simulation speed: move the world, tick, let the scheduler start work."""
    t = sim.clock.now()
    while t < until and not stop():
        t += TICK
        sim.world.advance_to(t)
        sim.controller.tick(t)
        sim.world.after_tick(t)
    return t


def _world(cloud: str, *, notices: bool = True, store: Store | None = None) -> Simulation:
    trace = [
        TraceJob("A", 0.0, 20 * 3600.0, 8, per_node=8),  # holds the one on-prem node all along
        TraceJob("B", 10.0, 3 * 3600.0, 8, per_node=8, team="vision"),
    ]
    return Simulation(
        trace, POLICY, settings=SimSettings(nodes=1, tick_s=TICK, spot_notices=notices), offers=_spot_offers(cloud),
        store=store,
    )


@pytest.mark.parametrize("cloud", ["aws", "azure"])
def test_notice_checkpoints_drains_requeues_and_replaces_before_the_reclaim(cloud: str) -> None:
    sim = _world(cloud)
    cl = sim.cluster
    t = _drive(sim, TRACE_EPOCH + 4 * 3600, stop=lambda: (j := cl.job("B")) is not None and j.cloud)
    b = cl.job("B")
    assert b is not None and b.cloud, "B never burst"
    t = _drive(sim, t + 50 * 60)  # 50 min on the spot node: one periodic checkpoint at 30 min
    (first,) = sim.store.live_instances()
    assert first.market is Market.SPOT and first.state is InstanceState.JOINED
    provider = sim.providers[cloud]
    reclaim_at = t + 300.0
    provider.reclaim(first.cloud_id, reclaim_at)
    ran_before_notice = cl.progress(b, reclaim_at - NOTICE_LEAD_S[cloud])

    t = _drive(sim, reclaim_at + 600)
    rows = sim.store.audit_rows(subject=first.id, kind="spot", limit=10)
    actions = [r.action for r in reversed(rows)]
    # requeued held, and released once its replacement joined (policies/spot.py plan_releases)
    assert actions == ["notice", "checkpoint", "requeue", "release"]
    assert rows[1].data["hold"] is True and "held until its replacement joins" in rows[1].reason
    assert "joined" in rows[0].reason and rows[0].data["jobs"] == ["B"]
    notice_row = rows[-1]
    assert notice_row.data["jobs"] == ["B"]
    assert notice_row.data["reclaim_at"] == reclaim_at
    # checkpoint signal, then hold (drained node, requeue), exactly once each
    assert b.signals == 1 and b.holds == 1 and b.releases == 1
    # No work lost beyond the checkpoint: what was saved is at least what it ran before the
    # notice, and the loss is only the time between the signal and the requeue (< the lead).
    assert b.done_work >= ran_before_notice - 1e-6
    assert 0.0 <= b.lost_work < NOTICE_LEAD_S[cloud]
    # The instance was drained and then closed as LOST by the reconcile (no error).
    hist = [r.action for r in reversed(sim.store.audit_rows(subject=first.id, kind="instance", limit=20))]
    assert "joined->draining" in hist and "draining->lost" in hist and hist[-1] == "lost->terminated"
    assert sim.controller.last is not None and not sim.controller.last.executed.errors
    # The reclaim is evidence against the offer (policies/spot.py reclaim factor).
    seen = sim.controller.reclaim_history()[first.offer_key]
    assert seen.reclaims == 1 and seen.hours > 50 / 60
    assert sim.controller.build_snapshot(t, sim.cluster.snapshot()).reclaims[first.offer_key] == seen
    # A replacement was launched before the reclaim, for B.
    repl = [i for i in sim.store.instances() if i.id != first.id and "B" in i.for_jobs]
    assert repl and min(i.created_at for i in repl) < reclaim_at
    # ... and B was held until it joined: released no earlier than the replacement's join.
    joined = min(i.joined_at for i in repl if i.joined_at is not None)
    assert rows[0].at >= joined
    # B finishes with no work run twice beyond the lost window.
    _drive(sim, t + 4 * 3600, stop=lambda: "B" in cl.finished)
    assert "B" in cl.finished


def test_without_notices_a_reclaim_loses_the_run() -> None:
    sim = _world("aws", notices=False)
    cl = sim.cluster
    t = _drive(sim, TRACE_EPOCH + 4 * 3600, stop=lambda: (j := cl.job("B")) is not None and j.cloud)
    t = _drive(sim, t + 50 * 60)
    (first,) = sim.store.live_instances()
    b = cl.job("B")
    assert b is not None
    sim.providers["aws"].reclaim(first.cloud_id, t + 300.0)
    _drive(sim, t + 900)
    assert b.signals == 0 and b.holds == 0 and b.requeues == 1 and b.done_work == 0.0
    assert sim.store.audit_rows(subject=first.id, kind="spot") == []


def _restarted(sim: Simulation, store: Store | None = None) -> Controller:
    """A new controller on the same store (or a new connection to it) and ports: what a
    restarted daemon builds."""
    return Controller(cluster=sim.s.cluster, queue=sim.cluster, providers=sim.providers, store=store or sim.store,
                      offers=sim.offers, policy=sim.policy, challenge_queue=sim.cluster)


def _on_spot_then_noticed(cloud: str, store: Store | None = None) -> tuple[Simulation, float, float]:
    """B running 50 min on a spot node, then a reclaim announced 300 s ahead. -> (sim, t, reclaim_at)"""
    sim = _world(cloud, store=store)
    cl = sim.cluster
    t = _drive(sim, TRACE_EPOCH + 4 * 3600, stop=lambda: (j := cl.job("B")) is not None and j.cloud)
    t = _drive(sim, t + 50 * 60)
    (first,) = sim.store.live_instances()
    reclaim_at = t + 300.0
    sim.providers[cloud].reclaim(first.cloud_id, reclaim_at)
    return sim, t, reclaim_at


def test_cloud_gpu_hours_used_count_the_run_before_a_spot_requeue() -> None:
    """B runs all its 3 h on cloud nodes, in two runs (before the notice, and on the replacement
    after it): the GPU time used counts both, and the work after the checkpoint is run twice.
    (Before the fix the first run was dropped when the hold stopped it: B counted ~2 h 10 min.)"""
    sim, t, reclaim_at = _on_spot_then_noticed("aws")
    cl = sim.cluster
    _drive(sim, reclaim_at + 4 * 3600, stop=lambda: "B" in cl.finished)
    b = cl.finished["B"]
    assert b.holds == 1 and b.first_start is not None
    assert sim.world.cloud_gpu_s_used == pytest.approx((3 * 3600.0 + b.lost_work) * 8)
    # Paid covers used: the reclaimed instance is billed to its reclaim, the replacement after.
    paid_s = sum(p.gpu_hours_paid(sim.clock.now()) for p in sim.providers.values()) * 3600.0
    assert paid_s >= sim.world.cloud_gpu_s_used


@pytest.mark.parametrize("db", ["memory", "sqlite"])
def test_reclaim_history_and_spot_holds_survive_a_controller_restart(db: str, tmp_path: Path) -> None:
    """Restart after the requeue (B held, its replacement booting): the new controller knows the
    hold from the audit and releases B when the replacement joins (not before, not twice); and
    after the reclaim a restarted controller has the same reclaim history as the old one. On
    SQLite the restarted controller opens a new connection to the database file."""
    url = f"sqlite:///{tmp_path / 'burst.db'}"

    def reopen() -> Store | None:
        return SqlStore.from_url(url, upgrade=False) if db == "sqlite" else None

    sim, _, reclaim_at = _on_spot_then_noticed("aws", SqlStore.from_url(url) if db == "sqlite" else None)
    cl = sim.cluster
    (first,) = sim.store.live_instances()
    _drive(sim, reclaim_at - 10.0)
    b = cl.job("B")
    assert b is not None and b.holds == 1 and b.releases == 0, "B is held until its replacement joins"
    sim.controller = _restarted(sim, reopen())  # _drive ticks sim.controller
    assert set(sim.controller.spot_holds()) == {"B"}
    _drive(sim, reclaim_at + 900)
    assert b.releases == 1 and b.release_calls == 1
    releases = [r for r in sim.store.audit_rows(kind="spot", limit=20) if r.action == "release"]
    assert len(releases) == 1 and "joined" in releases[0].reason
    before = sim.controller.reclaim_history()
    assert before[first.offer_key].reclaims == 1
    after = _restarted(sim, reopen()).reclaim_history()
    assert after == before


@pytest.mark.parametrize("spot_offered", [True, False])
def test_held_jobs_are_shown_due_behind_the_spot_threshold(spot_offered: bool) -> None:
    """With spot launches possible, overflow's threshold is a boot earlier
    (policies.overflow.base_threshold), and a spot-held job must be shown due behind the jobs due
    by *that* threshold: shown by the on-demand one, it would sit in front of a job that waited
    between the two thresholds and take the instance booting for it. The controller rebuilds the
    hold from its audit row and shows the held job at ``now - threshold - tick``."""
    sim = _world("aws")
    sim.store.audit(at=TRACE_EPOCH, actor="controller", kind="spot", subject="i-gone", action="requeue",
                    reason="spot reclaim", data={"jobs": ["old"], "priorities": [0], "hold": True})
    offers = sim.offers if spot_offered else [o for o in b1_offers() if o.cloud == "aws" and o.gpu_count == 8]
    assert any(o.market is Market.SPOT for o in offers) is spot_offered
    ctl = Controller(cluster=sim.s.cluster, queue=sim.cluster, providers=sim.providers, store=sim.store,
                     offers=offers, policy=sim.policy, challenge_queue=sim.cluster)
    assert set(ctl.spot_holds()) == {"old"}
    now = TRACE_EPOCH + 3 * 3600
    old = Job("old", 8, TRACE_EPOCH - 3600, JobState.HELD, gpus_per_node=8, may_burst=True)
    snap = ctl.build_snapshot(now, QueueSnapshot((old,), (), ()))
    base = base_threshold(sim.policy.overflow, ctl.boot_estimate(), TICK, spot=spot_offered)
    (shown,) = snap.pending
    assert shown.submit_time == now - base - TICK


@pytest.mark.parametrize("cloud", ["aws", "azure"])
def test_a_job_reclaimed_twice_is_requeued_twice_and_loses_no_checkpointed_work(cloud: str) -> None:
    """The replacement is spot too and is reclaimed as well: the second notice is handled like
    the first (checkpoint, hold, a second replacement, release once it joins), the job keeps
    everything up to its last checkpoint across both, and finishes. Nothing is left live."""
    sim, t, reclaim_at = _on_spot_then_noticed(cloud)
    cl = sim.cluster
    first = sim.store.instances()[0]
    # Wait until the replacement has joined and B runs on it for a while.
    t = _drive(sim, reclaim_at + 3600, stop=lambda: (j := cl.job("B")) is not None and j.start is not None
               and j.start > reclaim_at and sim.clock.now() > j.start + 20 * 60)
    b = cl.job("B")
    assert b is not None and b.cloud and b.holds == 1
    (second,) = [i for i in sim.store.live_instances() if i.joined_at is not None and i.id != first.id
                 and "B" in i.for_jobs]
    saved_after_first = b.done_work
    reclaim2 = t + 300.0
    sim.providers[cloud].reclaim(second.cloud_id, reclaim2)
    ran_before_second = cl.progress(b, reclaim2 - NOTICE_LEAD_S[cloud])
    _drive(sim, reclaim2 + 4 * 3600, stop=lambda: "B" in cl.finished)
    assert "B" in cl.finished
    b = cl.finished["B"]
    assert b.signals == 2 and b.holds == 2 and b.releases == 2
    assert b.done_work >= max(saved_after_first, ran_before_second) - 1e-6
    assert 0.0 <= b.lost_work < 2 * NOTICE_LEAD_S[cloud]
    actions = [r.action for r in reversed(sim.store.audit_rows(subject=second.id, kind="spot", limit=10))]
    assert actions == ["notice", "checkpoint", "requeue", "release"]
    third = [i for i in sim.store.instances() if i.id not in (first.id, second.id) and "B" in i.for_jobs]
    assert third and min(i.created_at for i in third) < reclaim2
    assert sim.controller.reclaim_history()[second.offer_key].reclaims == 2
    assert sim.controller.last is not None and not sim.controller.last.executed.errors
    _drive(sim, sim.clock.now() + 1800)
    assert sim.store.live_instances() == []  # the last replacement was scaled in once B was done
