"""The metrics the Grafana dashboard needs beyond the tick's own (burst/metrics.py, "dashboard
metrics"): demand, fleet by state/cloud/purpose, spend against each cap, boot time, launch
attempts and errors by class, mirror bytes and time, and that the live wiring meters them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from burst.daemon import Daemon
from burst.domain import TAG_CLUSTER, TAG_ID, LaunchSpec, Offer, Purpose
from burst.errors import CapacityError, TransientMirrorError
from burst.metrics import REGISTRY, MeteredMirror, MeteredProvider, observe_tick
from burst.ports import MirrorResult
from burst.sim.clock import VirtualClock
from burst.sim.cloud import SimProvider
from tests.core.world import AWS_AZ1, AWS_AZ2, CLUSTER, T0, TICK, World


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_fleet_demand_spend_and_boot_time_follow_the_snapshot() -> None:
    w = World(nodes=1)
    w.submit("fill", 8, 100_000)
    w.submit("j1", 8, 600)
    w.submit("j2", 16, 600, may_burst=False)
    d = Daemon(w.controller, w.clock, w.store, holder="me", metrics=True, before_tick=w.step)
    w.clock.set(T0 + TICK)
    assert d.run_once() is not None
    assert value("burst_pending_gpus", may_burst="true") == 8.0
    assert value("burst_pending_gpus", may_burst="false") == 16.0
    for k in range(2, 20):
        w.clock.set(T0 + k * TICK)
        res = d.run_once()
        assert res is not None and res.snapshot is not None
        if any(i.state == "joined" for i in res.snapshot.instances):
            break
    assert res is not None
    snap = res.snapshot
    assert snap is not None
    inst = next(i for i in snap.instances if i.state == "joined")
    assert value("burst_instances", state="joined", cloud=inst.cloud, purpose=str(inst.purpose)) == 1.0
    # a state no instance is in any more is dropped, not left at its last value
    assert value("burst_instances", state="launching", cloud=inst.cloud, purpose=str(inst.purpose)) == 0.0
    assert REGISTRY.get_sample_value("burst_instances", {"state": "launching", "cloud": inst.cloud,
                                                         "purpose": str(inst.purpose)}) is None
    assert value("burst_spend_usd", budget="month") == snap.spend.month_usd
    assert value("burst_budget_cap_usd", budget="day") == snap.spend.day_cap_usd
    # the estimate is learnt from instances that joined: the one above (booted in 240 s here)
    assert snap.boot_estimate_s is not None
    assert value("burst_boot_estimate_seconds") == snap.boot_estimate_s
    assert value("burst_pending_gpus", may_burst="true") == 0.0  # j1 runs in the cloud now
    # A leader that turns standby keeps its last fleet values: the dashboard keeps only the series
    # of the pod with burst_leader == 1 (docs/operate.md).
    observe_tick(None, 0.0, leader=False)
    assert value("burst_leader") == 0.0
    assert value("burst_instances", state="joined", cloud=inst.cloud, purpose=str(inst.purpose)) == 1.0


def _spec(intent: str, offer: Offer) -> LaunchSpec:
    return LaunchSpec(intent_id=intent, offer=offer, purpose=Purpose.OVERFLOW,
                      tags={TAG_CLUSTER: CLUSTER, TAG_ID: intent})


def test_launch_attempts_and_errors_are_counted_by_cloud_and_class() -> None:
    inner = SimProvider("aws", CLUSTER, VirtualClock(T0), unavailable=[AWS_AZ2.key])
    p = MeteredProvider(inner)
    attempts, capacity = value("burst_launch_attempts_total", cloud="aws"), value(
        "burst_launch_errors_total", cloud="aws", error_class="CapacityError")
    ok = p.launch(_spec("i-1", AWS_AZ1))
    with pytest.raises(CapacityError):
        p.launch(_spec("i-2", AWS_AZ2))
    assert value("burst_launch_attempts_total", cloud="aws") == attempts + 2
    assert value("burst_launch_errors_total", cloud="aws", error_class="CapacityError") == capacity + 1
    # everything else passes through unchanged
    assert p.find("i-1") == inner.find("i-1") and p.list_instances() == inner.list_instances()
    p.terminate([ok.cloud_id])
    assert inner.instances[ok.cloud_id].terminated_at is not None


class _Registry:
    """A two-image mirror of our own: ``big`` copies 5 MB, ``broken`` fails."""

    def target_for(self, image: str, cloud: str, region: str) -> str:
        return f"{cloud}.example/{region}/{image}"

    def ensure(self, image: str, cloud: str, region: str) -> MirrorResult:
        if image == "broken":
            raise TransientMirrorError("registry said 503")
        return MirrorResult(image, self.target_for(image, cloud, region), "sha256:" + "0" * 64, bytes_uploaded=5_000_000)


def test_mirror_bytes_time_and_failures_are_counted() -> None:
    m = MeteredMirror(_Registry())
    before = value("burst_mirror_bytes_total", cloud="azure")
    copies = value("burst_mirror_copy_duration_seconds_count", cloud="azure")
    out = m.ensure("big", "azure", "eastus")
    assert dataclasses.asdict(out)["bytes_uploaded"] == 5_000_000
    with pytest.raises(TransientMirrorError):
        m.ensure("broken", "azure", "eastus")
    assert value("burst_mirror_bytes_total", cloud="azure") == before + 5_000_000
    assert value("burst_mirror_copy_duration_seconds_count", cloud="azure") == copies + 2
    assert value("burst_mirror_errors_total", cloud="azure", error_class="TransientMirrorError") >= 1
    assert m.target_for("x", "azure", "eastus") == "azure.example/eastus/x"


def test_the_live_wiring_meters_every_provider_and_the_mirror_copies(tmp_path: Path) -> None:
    from burst.mirror_worker import MirrorWorker
    from burst.store.memory import MemoryStore
    from burst.wiring import build_runtime
    from tests.unit.test_wiring_capabilities import MIRROR, _cfg

    rt = build_runtime(_cfg(tmp_path, mirror=MIRROR, clouds={"aws": {"simulated": True}}), store=MemoryStore())
    providers = rt.controller.providers
    assert providers and all(isinstance(p, MeteredProvider) for p in providers.values())
    assert {p.inner for p in providers.values()} == set(rt.providers.values())  # type: ignore[attr-defined]
    worker = rt.controller.executor.async_mirror
    assert isinstance(worker, MirrorWorker)
    try:
        copier = worker._copier
        assert isinstance(copier, MeteredMirror) and copier.inner is rt.prewarmer
    finally:
        worker.close()
