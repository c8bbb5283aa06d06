"""Controller.tick over the simulated cluster and clouds: the overflow cycle and its failures."""

from __future__ import annotations

import pytest

from burst.domain import INSTANCE_TRANSITIONS, InstanceState, Launch, Terminate, Undrain
from burst.ports import Store
from tests.core.world import AWS_AZ1, AWS_AZ2, AZURE, T0, TICK, World

CYCLE = [
    "->planned",
    "planned->launching",
    "launching->running",
    "running->joined",
    "joined->draining",
    "draining->terminating",
    "terminating->terminated",
]


def _only_instance(w: World):  # type: ignore[no-untyped-def]
    (inst,) = w.store.instances()
    return inst


def test_full_overflow_cycle(any_store: Store) -> None:
    w = World(store=any_store)
    w.submit("hog", 8, 100_000)  # fills the one on-prem node
    w.submit("b", 8, 600)
    launched_at = None
    for _ in range(60):
        res = w.tick(w.now() + TICK)
        if res.plan.of(Launch):
            launched_at = w.now()
    inst = _only_instance(w)
    # launched when the 60 s threshold passed, on the cheapest offer
    assert launched_at == T0 + 60
    assert (inst.cloud, inst.zone, inst.instance_type) == ("aws", AWS_AZ1.zone, AWS_AZ1.instance_type)
    assert inst.for_jobs == ("b",)
    # every step of the lifecycle happened, in order, and was audited with a reason
    assert w.actions(inst.id) == CYCLE
    rows = any_store.audit_rows(subject=inst.id, limit=100)
    assert all(r.reason.strip() and r.actor for r in rows)
    for r in rows:
        if "->" in r.action and not r.action.startswith("->"):
            src, dst = r.action.split("->")
            assert (InstanceState(src), InstanceState(dst)) in INSTANCE_TRANSITIONS
    # the job ran on the burst node, and only there
    (b,) = [s for s in w.started if s.job == "b"]
    assert b.cloud and b.nodes == (f"burst-{inst.id}",)
    assert b.at == launched_at + 240  # boot, join and pull take 240 s in the fake cloud
    assert w.finished["b"] == b.at + 600
    # given back after the idle timeout, and nothing left running in the cloud
    assert inst.state is InstanceState.TERMINATED
    assert inst.terminated_at is not None and inst.terminated_at - w.finished["b"] <= 120 + 3 * TICK
    assert all(not p.list_instances() for p in w.providers.values())
    assert any_store.live_instances() == []
    # the books agree with the cloud's bill, to the cent
    assert round(any_store.spend(since=0.0, now=w.now()), 2) == round(w.billed_usd(), 2) > 0
    assert w.launched() == 1


def test_no_burst_when_job_fits_on_prem() -> None:
    w = World(nodes=2)
    w.submit("hog", 8, 100_000)
    w.submit("small", 8, 600)
    w.run(T0 + 900)
    assert w.launched() == 0 and w.store.instances() == []
    assert [s.cloud for s in w.started] == [False, False]


def test_non_burstable_job_waits_for_on_prem() -> None:
    w = World()
    w.submit("hog", 8, 1200)
    w.submit("local", 8, 60, may_burst=False)
    w.run(T0 + 1800)
    assert w.launched() == 0
    (s,) = [s for s in w.started if s.job == "local"]
    assert s.at == T0 + 1200 and not s.cloud


def test_capacity_error_backs_off_and_next_tick_uses_next_offer() -> None:
    w = World(provider_kw={"unavailable": {AWS_AZ1.key}})
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600)
    w.run(T0 + 60)
    (failed,) = w.store.instances()
    assert failed.state is InstanceState.TERMINATED
    assert w.actions(failed.id) == ["->planned", "planned->launch_failed", "launch_failed->terminated"]
    assert "capacity" in failed.last_error
    backoffs = w.store.backoffs(w.now())
    assert set(backoffs) == {AWS_AZ1.key}
    assert backoffs[AWS_AZ1.key].until > w.now()
    assert w.providers["aws"].capacity_errors == 1 and w.launched() == 0
    # a failed launch costs nothing
    assert [e.usd for e in w.store.spend_entries(since=0.0)] == [0.0]

    w.run(T0 + 90)
    live = w.store.live_instances()
    assert len(live) == 1 and live[0].zone == AWS_AZ2.zone and live[0].state is InstanceState.LAUNCHING
    assert w.launched() == 1
    w.run(T0 + 3600)
    assert "b" in w.finished and w.launched() == 1


def test_backoff_grows_with_repeated_failures() -> None:
    w = World(offers=(AWS_AZ1,), provider_kw={"unavailable": {AWS_AZ1.key}})
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600)
    untils = []
    for _ in range(40):
        w.tick(w.now() + TICK)
        b = w.store.backoffs(w.now()).get(AWS_AZ1.key)
        if b is not None and (not untils or b.until != untils[-1][1]):
            untils.append((w.now(), b.until))
    cooldowns = [until - at for at, until in untils]
    assert cooldowns[:3] == [60.0, 120.0, 240.0]
    # only one attempt per cool-down: never hammering the same offer every tick
    assert w.providers["aws"].calls["launch"] == len(untils)


def test_permanent_error_disables_provider_alerts_admins_and_fails_over() -> None:
    w = World()
    w.providers["aws"].broken = "AuthFailure: credentials rejected"
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600)
    w.run(T0 + 60)
    (failed,) = w.store.instances()
    assert failed.cloud == "aws" and failed.state is InstanceState.TERMINATED
    assert "aws" in w.controller.disabled
    assert [a for a, _ in w.notifier.sent] == ["admins"]
    assert "aws" in w.notifier.sent[0][1]
    assert any(r.action == "disabled" for r in w.store.audit_rows(kind="provider"))

    w.run(T0 + 3600)
    insts = w.store.instances()
    assert {i.cloud for i in insts if i.launched_at is not None} == {"azure"}
    assert w.providers["azure"].launched == 1 and w.providers["aws"].launched == 0
    assert "b" in w.finished
    assert len(w.notifier.sent) == 1  # alerted once, not every tick


def test_unreadable_queue_skips_the_tick() -> None:
    w = World()
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600, at=T0 - 3600)  # long overdue
    before = w.store.audit_rows(limit=1000)
    w.cluster.fail_next_snapshot = "squeue: connection refused"
    res = w.tick(T0 + TICK)
    assert res.skipped and "connection refused" in res.skipped
    assert res.plan.actions == () and res.snapshot is None
    assert w.launched() == 0 and w.store.instances() == []
    assert w.store.audit_rows(limit=1000) == before
    assert sum(p.calls["launch"] + p.calls["terminate"] for p in w.providers.values()) == 0
    # the next readable tick acts
    w.tick(T0 + 2 * TICK)
    assert w.launched() == 1


def test_unreadable_queue_does_not_scale_in() -> None:
    w = World()
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 300)
    w.run(T0 + 630)  # b ran 300..600 on the burst node; its idle timer is running
    (inst,) = w.store.live_instances()
    assert inst.state is InstanceState.JOINED and inst.idle_since == T0 + 600
    for _ in range(10):
        w.cluster.fail_next_snapshot = "scheduler down"
        w.tick(w.now() + TICK)
    assert w.store.get_instance(inst.id).state is InstanceState.JOINED  # type: ignore[union-attr]


def test_spot_interruption_requeues_the_job_which_runs_later() -> None:
    import dataclasses

    from burst.domain import Market
    from tests.core.world import POLICY, offer

    spot = offer("aws", "us-east-1", "use1-az1", 10.0, Market.SPOT)
    policy = dataclasses.replace(POLICY, selection=dataclasses.replace(POLICY.selection, allow_spot=True))
    w = World(offers=(spot, AZURE), policy=policy)
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 1800)
    w.run(T0 + 600)
    (inst,) = w.store.live_instances()
    assert inst.market is Market.SPOT and inst.state is InstanceState.JOINED
    assert [s.job for s in w.started if s.cloud] == ["b"]
    # the cloud reclaims it while b runs on it
    aws = w.providers["aws"]
    (sim,) = [i for i in aws.instances.values() if i.burst_id == inst.id]
    sim.interrupt_at = w.now() + 10
    aws._push(sim.interrupt_at, sim.cloud_id)  # the fake's event queue; no SDK involved
    w.tick(w.now() + TICK)
    assert aws.interruptions == 1
    assert w.actions(inst.id)[-2:] == ["joined->lost", "lost->terminated"]
    assert w.store.get_instance(inst.id).state is InstanceState.TERMINATED  # type: ignore[union-attr]
    assert w.cluster.requeues == 1
    assert "b" not in w.finished
    w.run(T0 + 4 * 3600)
    assert "b" in w.finished
    assert [s.job for s in w.started if s.cloud] == ["b", "b"]
    assert w.store.live_instances() == []
    # The books close a reclaimed instance when the tick notices it, not when the cloud ended
    # it (a listing does not say when): they may over-count by at most one tick of its price.
    ledger, billed = w.store.spend(since=0.0, now=w.now()), w.billed_usd()
    assert billed <= ledger <= billed + TICK * spot.price_per_hour / 3600 + 1e-9


def test_gang_launch_rolls_back_when_a_member_fails() -> None:
    # two-node gang; aws az1 allows exactly one launch before capacity runs out
    w = World(nodes=1, offers=(AWS_AZ1, AWS_AZ2))
    aws = w.providers["aws"]
    w.submit("hog", 8, 100_000)
    w.submit("g", 16, 600)
    real_launch = aws.launch
    calls = {"n": 0}

    def flaky(spec):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            aws.unavailable.add(spec.offer.key)
        return real_launch(spec)

    aws.launch = flaky  # type: ignore[method-assign]
    w.run(T0 + 60)
    insts = {i.zone: i for i in w.store.instances()}
    assert len(insts) == 1 and len(w.store.instances()) == 2
    launched, failed = sorted(w.store.instances(), key=lambda i: i.cloud_id == "")
    assert launched.gang_id == failed.gang_id != ""
    assert w.actions(failed.id) == ["->planned", "planned->launch_failed", "launch_failed->terminated"]
    # the member that did launch was given back in the same tick
    assert w.actions(launched.id) == ["->planned", "planned->launching", "launching->terminating"]
    assert "gang" in w.store.audit_rows(subject=launched.id, limit=1)[0].reason
    assert aws.list_instances() == ()
    w.run(T0 + 90)
    assert w.store.get_instance(launched.id).state is InstanceState.TERMINATED  # type: ignore[union-attr]
    # the next attempt lands the whole gang, two nodes, in the next zone
    w.run(T0 + 1200)
    (g,) = [s for s in w.started if s.job == "g"]
    assert g.cloud and len(g.nodes) == 2
    zones = {w.store.get_instance(n.removeprefix("burst-")).zone for n in g.nodes}  # type: ignore[union-attr]
    assert zones == {AWS_AZ2.zone}
    assert w.store.live_instances() == []


@pytest.mark.parametrize("n_jobs", [1, 3])
def test_every_launch_is_audited_with_its_reason(n_jobs: int) -> None:
    w = World(nodes=1)
    w.submit("hog", 8, 100_000)
    for k in range(n_jobs):
        w.submit(f"j{k}", 8, 600)
    w.run(T0 + 60)
    insts = w.store.instances()
    assert len(insts) == n_jobs
    for i in insts:
        (planned,) = [r for r in w.store.audit_rows(subject=i.id) if r.action == "->planned"]
        assert i.for_jobs[0] in planned.reason and "threshold" in planned.reason


def test_draining_node_is_taken_back_for_work_due_now(any_store: Store) -> None:
    # One overflow instance runs job b, goes idle and is drained. Before it is terminated, a
    # job that has already waited past the threshold arrives: the controller cancels the drain
    # (DRAINING -> JOINED, the scheduler node schedulable again) instead of launching.
    w = World(store=any_store)
    w.submit("hog", 8, 100_000, may_burst=False)
    w.submit("b", 8, 600)
    while True:
        w.tick(w.now() + TICK)
        assert w.now() < T0 + 3600, f"never drained: {w.store.instances()}"
        if w.store.instances() and _only_instance(w).state is InstanceState.DRAINING:
            break
    inst = _only_instance(w)
    node = next(n for n in w.cluster.snapshot().nodes if n.instance_id == inst.id)
    assert not node.schedulable
    w.submit("c", 8, 300, at=w.now() - 3600)  # waited an hour already: due now
    res = w.tick(w.now() + 1)
    assert [a.instance_id for a in res.plan.of(Undrain)] == [inst.id]
    assert res.plan.of(Launch) == [] and res.plan.of(Terminate) == []
    assert _only_instance(w).state is InstanceState.JOINED
    assert w.actions(inst.id)[-1] == "draining->joined"
    (c,) = [s for s in w.started if s.job == "c"]
    assert c.nodes == (f"burst-{inst.id}",)
    assert w.launched() == 1
    # and once c is done, the node drains and goes as usual
    w.run(w.now() + 600 + 300)
    assert _only_instance(w).state is InstanceState.TERMINATED
