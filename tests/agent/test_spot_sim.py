"""Spot notices in the simulator: notice -> checkpoint -> drain -> requeue at the head of the line
-> replacement before the reclaim -> the reclaim closes the instance as LOST, not an error; no
work lost beyond the last checkpoint."""

from __future__ import annotations

import pytest

from burst.domain import InstanceState, Market
from burst.sim.runner import SimSettings, Simulation, b1_offers
from burst.sim.trace import TraceJob
from burst.sim.world import TRACE_EPOCH
from policies import PolicyConfig
from policies.model import SelectionConfig
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


def _world(cloud: str, *, notices: bool = True) -> Simulation:
    trace = [
        TraceJob("A", 0.0, 20 * 3600.0, 8, per_node=8),  # holds the one on-prem node all along
        TraceJob("B", 10.0, 3 * 3600.0, 8, per_node=8, team="vision"),
    ]
    return Simulation(
        trace, POLICY, settings=SimSettings(nodes=1, tick_s=TICK, spot_notices=notices), offers=_spot_offers(cloud)
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
    assert actions == ["notice", "checkpoint", "requeue"]
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
