"""Intent before action: crash recovery, adoption, and orphan collection."""

from __future__ import annotations

import pytest

from burst.controller import Controller
from burst.domain import Instance, InstanceState, Market, Offer, Purpose
from burst.ports import Store
from tests.core.world import AWS_AZ1, CLUSTER, T0, TICK, World


def _intent(iid: str, o: Offer = AWS_AZ1, for_jobs: tuple[str, ...] = ("b",), at: float = T0) -> Instance:
    return Instance(
        id=iid, cloud=o.cloud, region=o.region, zone=o.zone, instance_type=o.instance_type, market=Market.ON_DEMAND,
        purpose=Purpose.OVERFLOW, gpus=o.gpu_count, gpu_model=o.gpu_model, price_per_hour=o.price_per_hour,
        created_at=at, for_jobs=for_jobs,
    )


def _restart(w: World) -> None:
    """A new controller process over the same store, queue and clouds (in-memory state lost)."""
    w.controller = Controller(
        cluster=CLUSTER, queue=w.cluster, providers=w.providers, store=w.store, offers=w.offers, policy=w.policy,
        notifier=w.notifier, orphan_grace_s=w.orphan_grace_s,
    )


def _world(store: Store | None = None) -> World:
    w = World(store=store) if store is not None else World()
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600, at=T0 - 3600)  # overdue: the policy wants capacity for it now
    return w


def test_planned_intent_whose_instance_exists_is_adopted(any_store: Store) -> None:
    w = _world(any_store)
    w.store.create_intent(_intent("b-crash1"), now=T0, actor="controller", reason="test: crashed after this")
    cloud_id = w.launch_directly("aws", "b-crash1")
    res = w.tick(T0 + TICK)
    assert "b-crash1" in res.recovered
    inst = w.store.get_instance("b-crash1")
    assert inst is not None and inst.state is InstanceState.LAUNCHING and inst.cloud_id == cloud_id
    assert w.actions("b-crash1")[-1] == "planned->launching"
    w.run(T0 + 1800)
    assert w.launched() == 1  # adopted, never launched a second time
    assert [s.nodes for s in w.started if s.job == "b"] == [("burst-b-crash1",)]


def test_planned_intent_without_instance_is_launched_once_under_its_id(any_store: Store) -> None:
    w = _world(any_store)
    w.store.create_intent(_intent("b-crash2"), now=T0, actor="controller", reason="test: crashed before the call")
    res = w.tick(T0 + TICK)
    assert "b-crash2" in res.recovered
    inst = w.store.get_instance("b-crash2")
    assert inst is not None and inst.state is InstanceState.LAUNCHING
    (ci,) = w.providers["aws"].list_instances()
    assert ci.burst_id == "b-crash2" and ci.cloud_id == inst.cloud_id
    assert w.launched() == 1
    w.run(T0 + 1800)
    assert w.launched() == 1
    assert "b" in w.finished


def test_planned_intent_no_longer_needed_is_abandoned() -> None:
    w = _world()
    w.store.create_intent(_intent("b-old", for_jobs=("gone",)), now=T0, actor="controller", reason="test")
    w.tick(T0 + TICK)
    assert w.store.get_instance("b-old").state is InstanceState.TERMINATED  # type: ignore[union-attr]
    assert w.providers["aws"].calls["find"] == 1
    assert all(ci.burst_id != "b-old" for ci in w.providers["aws"].list_instances())


@pytest.mark.parametrize("crash", ["before-cloud-call", "after-cloud-call"])
def test_crash_around_the_launch_call_neither_leaks_nor_doubles(crash: str, sql_store: Store) -> None:
    w = _world(sql_store)
    aws = w.providers["aws"]
    real = aws.launch

    def crashing(spec):  # type: ignore[no-untyped-def]
        if crash == "after-cloud-call":
            real(spec)
        raise SystemExit("kill -9")  # not a ProviderError: the process dies mid-tick

    aws.launch = crashing  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        w.tick(T0 + TICK)
    (planned,) = w.store.live_instances()
    assert planned.state is InstanceState.PLANNED  # the intent was written before the call
    aws.launch = real  # type: ignore[method-assign]
    _restart(w)
    w.run(T0 + 3600)
    assert aws.launched == 1
    assert {ci.burst_id for ci in aws.list_instances()} <= {planned.id}
    assert "b" in w.finished
    assert [s.nodes for s in w.started if s.job == "b"] == [(f"burst-{planned.id}",)]
    w.run(T0 + 7200)
    assert w.store.live_instances() == [] and aws.list_instances() == ()


def test_orphan_is_terminated_only_after_the_grace_period() -> None:
    w = World(orphan_grace_s=300.0)
    w.submit("hog", 8, 100_000)
    cid = w.launch_directly("aws", "b-stranger")
    first_seen = T0 + TICK
    w.tick(first_seen)
    while w.now() + TICK < first_seen + 300:
        w.tick(w.now() + TICK)
        assert [c.cloud_id for c in w.providers["aws"].list_instances()] == [cid], f"killed early at {w.now() - first_seen}"
        assert w.store.audit_rows(kind="orphan") == []
    res = w.tick(first_seen + 300)
    assert res.orphans_terminated == [cid]
    assert w.providers["aws"].list_instances() == ()
    (row,) = w.store.audit_rows(kind="orphan")
    assert row.subject == cid and row.action == "terminate-orphan" and "b-stranger" in row.reason
    assert w.store.instances() == []  # an orphan never becomes one of ours


def test_instance_terminal_in_store_but_alive_in_cloud_is_an_orphan() -> None:
    w = World(orphan_grace_s=60.0)
    w.submit("hog", 8, 100_000)
    w.store.create_intent(_intent("b-closed", for_jobs=()), now=T0, actor="test", reason="test")
    w.store.transition_instance("b-closed", InstanceState.TERMINATED, now=T0, actor="test", reason="closed by hand")
    cid = w.launch_directly("aws", "b-closed")
    w.run(T0 + 60)
    assert w.providers["aws"].list_instances() != ()
    w.run(T0 + 120)
    assert w.providers["aws"].list_instances() == ()
    assert [r.subject for r in w.store.audit_rows(kind="orphan")] == [cid]


def test_orphan_that_disappears_restarts_its_grace() -> None:
    w = World(orphan_grace_s=120.0)
    w.submit("hog", 8, 100_000)
    cid = w.launch_directly("aws", "b-x")
    w.run(T0 + 60)
    w.providers["aws"].terminate([cid])  # someone else removed it
    w.run(T0 + 90)
    cid2 = w.launch_directly("aws", "b-y")
    w.run(T0 + 180)  # 90 s after b-y appeared: within its own grace
    assert [c.cloud_id for c in w.providers["aws"].list_instances()] == [cid2]
    w.run(T0 + 240)
    assert w.providers["aws"].list_instances() == ()
