"""Spot notice end to end on REAL Slurm: the node agent reads a notice from a fake metadata
service over HTTP (AWS and Azure shapes) and drains its own node with the notice reason; the
real ``Controller.tick`` sees it through the Slurm adapter, sends the checkpoint signal (the job's
USR1 trap writes a checkpoint file), marks the instance draining, requeues the job before the
reclaim and keeps it held while a replacement is launched for it (so no other job's node is
taken), closes the reclaimed instance as LOST without an error, and releases the job with its
original priority once the replacement has joined; the job then runs on the replacement.

The harness plays only what is outside burst's reach, as tests/e2e does: the booted instance
(``slurmd -Z`` named after the instance, through SimProvider's ``on_ready``) and its death at the
reclaim (``on_gone``). One dynamic node at a time on 127.0.0.1: the replacement's slurmd starts
when the reclaimed one has stopped."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from burst.agent.metadata import AwsImds, AzureScheduledEvents
from burst.agent.report import SlurmDrain
from burst.agent.runner import Agent
from burst.catalog import Catalog, OfferFilter
from burst.controller import Controller, TickResult
from burst.domain import InstanceState, JobState, Launch, Market
from burst.queues.slurm.adapter import SlurmQueue
from burst.queues.slurm.parse import node_name_for
from burst.queues.slurm.settings import SlurmSettings
from burst.sim.clock import WallClock
from burst.sim.cloud import SimInstance, SimProvider
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from policies.model import OverflowConfig, ScaleInConfig, SelectionConfig
from policies.spot import NoticeSettings, parse_notice, utc_iso
from tests.support.fake_metadata import FakeMetadata
from tests.support.slurm_cluster import SlurmCluster, skip_reason, started_cluster, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]

POLICY = PolicyConfig(
    overflow=OverflowConfig(wait_threshold_s=0),
    selection=SelectionConfig(allow_spot=True),
    scale_in=ScaleInConfig(idle_timeout_s=600, join_timeout_s=120),
    tick_interval_s=1,
)
LEAD_S = 14.0  # the notice comes this long before the reclaim (a short stand-in for 120 s / 30 s)
MARGIN_S = 8.0  # requeue this long before the reclaim: the job has LEAD - MARGIN to checkpoint


@pytest.fixture(scope="module")
def agent_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    yield from started_cluster(tmp_path_factory, "agent-slurm")


@pytest.fixture
def cluster(agent_slurm: SlurmCluster) -> Iterator[SlurmCluster]:
    agent_slurm.reset()
    yield agent_slurm
    agent_slurm.reset()


def _spot_offers(cloud: str) -> list:
    ods = Catalog.bundled().offers(OfferFilter(clouds=("aws",), regions=("us-east-1",), instance_types=("p4d.24xlarge",)))
    # One 8-GPU spot offer, on the cloud under test (the price is the catalog's).
    return [dataclasses.replace(ods[0], cloud=cloud, market=Market.SPOT, price_per_hour=ods[0].price_per_hour * 0.4)]


def _tick_until(controller: Controller, done, *, timeout: float, what: str, before=None) -> list[TickResult]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    out: list[TickResult] = []
    while True:
        now = time.time()
        if before is not None:
            before(now)
        res = controller.tick(now)
        out.append(res)
        if done(res):
            return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: last plan {res.plan.actions}, errors {res.executed.errors}")
        time.sleep(0.3)


@pytest.mark.parametrize("cloud", ["aws", "azure"])
def test_agent_notice_drains_node_and_controller_checkpoints_and_requeues(cluster: SlurmCluster, cloud: str) -> None:
    queue = SlurmQueue(SlurmSettings(slurm_conf=cluster.conf, timeout_s=10))
    cluster.fill_onprem()
    ckpt_dir = cluster.root / "jobs"
    script = (
        "#!/bin/sh\n"
        f"trap 'echo saved > {ckpt_dir}/ckpt-$SLURM_JOB_ID-${{SLURM_RESTART_COUNT:-0}}' USR1\n"
        "while true; do sleep 0.2; done\n"
    )
    jid = cluster.sbatch("--constraint=cloud", "--gres=gpu:8", "--job-name=spotwork", "--requeue", script=script)
    wait_for(lambda: any(j.id == jid for j in queue.snapshot().pending), 15, "the job to pend")

    booted: dict[str, str] = {}
    waiting: list[str] = []  # booted instances whose slurmd waits for the port (one at a time)

    def on_ready(inst: SimInstance, t: float) -> None:
        if booted:
            waiting.append(inst.burst_id)  # the replacement: joins once the reclaimed node is gone
            return
        name = node_name_for(inst.burst_id)
        cluster.start_dynamic_node(name, f"cloud,{cloud}")
        booted[inst.burst_id] = name

    def on_gone(inst: SimInstance, t: float) -> None:
        if inst.burst_id in booted:
            cluster.stop_burst_node(booted.pop(inst.burst_id))
            if waiting:
                bid = waiting.pop(0)
                booted[bid] = node_name_for(bid)
                cluster.start_dynamic_node(booted[bid], f"cloud,{cloud}")

    provider = SimProvider(cloud, "site-a", WallClock(), boot_s=1.0, running_after_s=0.3, billing_minimum_s=0,
                           on_ready=on_ready, on_gone=on_gone)
    store = MemoryStore()
    controller = Controller(cluster="site-a", queue=queue, providers={cloud: provider}, store=store,
                            offers=_spot_offers(cloud), policy=POLICY, challenge_queue=queue,
                            spot_notices=NoticeSettings(requeue_margin_s=MARGIN_S))
    before = provider.advance

    def running_on_burst(_: TickResult) -> bool:
        return any(j.id == jid and j.node_names and j.node_names[0] in booted.values() for j in queue.snapshot().running)

    _tick_until(controller, running_on_burst, timeout=40, what="the job running on the spot node", before=before)
    (iid, node), = booted.items()
    inst = store.get_instance(iid)
    assert inst is not None and inst.market is Market.SPOT and inst.state is InstanceState.JOINED
    prio_before = int(cluster.show_job(jid)["Priority"])

    # The cloud announces the reclaim; the node's agent reads it over HTTP and drains its node.
    with FakeMetadata() as fake:
        reclaim_at = float(int(time.time() + LEAD_S))
        if cloud == "aws":
            fake.aws_action = {"action": "terminate", "time": utc_iso(reclaim_at) + "Z"}
            source = AwsImds(fake.url, timeout_s=2)
        else:
            from email.utils import formatdate
            fake.set_azure_events([{"EventId": "ev-1", "EventType": "Preempt", "ResourceType": "VirtualMachine",
                                    "Resources": [iid], "EventStatus": "Scheduled",
                                    "NotBefore": formatdate(reclaim_at, usegmt=True)}])
            source = AzureScheduledEvents(fake.url, timeout_s=2, resource=iid)
        agent = Agent(source, SlurmDrain(node, env=cluster.env))
        notice = agent.step()
    assert notice is not None and notice.reclaim_at == reclaim_at and agent.reported == notice
    shown = cluster.run("scontrol", "show", "node", "-o", node).stdout
    assert "DRAIN" in shown and "burst:spot-reclaim" in shown, shown
    sn = next(n for n in queue.snapshot().nodes if n.name == node)
    assert not sn.schedulable and parse_notice(sn.labels["reason"]) == reclaim_at

    # The controller: notice -> checkpoint signal -> draining (first tick that sees it).
    res = controller.tick(time.time())
    assert store.get_instance(iid).state is InstanceState.DRAINING  # type: ignore[union-attr]
    assert not res.executed.errors
    ckpt = ckpt_dir / f"ckpt-{jid}-0"
    wait_for(ckpt.exists, 10, "the job's USR1 trap to write its checkpoint")
    assert cluster.job_state(jid) == "RUNNING"  # checkpointed, not stopped yet

    # ... then, MARGIN_S before the reclaim: requeued (restart count 1) and held, and a
    # replacement launched for it before the reclaim.
    def requeued(_: TickResult) -> bool:
        return cluster.show_job(jid).get("Restarts") == "1"

    ticks = _tick_until(controller, requeued, timeout=LEAD_S + 10, what="the job requeued", before=before)
    t_requeue = time.time()
    assert t_requeue < reclaim_at
    j = wait_for(lambda: (x := cluster.show_job(jid)).get("JobState") == "PENDING" and x, 10, "the job pending again")
    # held until its replacement joins (Slurm: priority 0, "job_requeued_in_held_state")
    assert j.get("Priority") == "0", j
    assert any(p.id == jid and p.state is JobState.HELD for p in queue.snapshot().pending), j

    def replaced(r: TickResult) -> bool:
        return any(isinstance(a, Launch) and jid in a.for_jobs and a.intent_id != iid for a in r.plan.actions)

    if not replaced(ticks[-1]):  # the requeue tick decides on the requeued queue already
        _tick_until(controller, replaced, timeout=10, what="a replacement launch", before=before)
    print(f"replacement: {reclaim_at - time.time():.1f}s before the reclaim; pending reason {cluster.show_job(jid).get('Reason')}")
    assert time.time() < reclaim_at

    # The reclaim: the cloud takes the instance; the reconcile closes it LOST, not as an error.
    (si,) = [s for s in provider.instances.values() if s.burst_id == iid]
    provider.reclaim(si.cloud_id, reclaim_at)

    def closed(_: TickResult) -> bool:
        return store.get_instance(iid).state is InstanceState.TERMINATED  # type: ignore[union-attr]

    results = _tick_until(controller, closed, timeout=max(5.0, reclaim_at - time.time() + 10), what="reclaimed", before=before)
    assert not any(r.executed.errors for r in results), [r.executed.errors for r in results]
    trail = [(r.kind, r.action) for r in reversed(store.audit_rows(subject=iid, limit=50))]
    assert ("spot", "notice") in trail and ("spot", "checkpoint") in trail and ("spot", "requeue") in trail
    assert trail.index(("spot", "checkpoint")) < trail.index(("spot", "requeue"))
    inst_trail = [t for t in trail if t[0] == "instance"]  # (the release row may follow: its subject is iid)
    assert ("instance", "draining->lost") in trail and inst_trail[-1] == ("instance", "lost->terminated")
    assert Path(ckpt).read_text().strip() == "saved"

    # The replacement joins (its slurmd starts once the reclaimed node is gone): the job is
    # released with its original priority and runs there.
    def runs_on_replacement(_: TickResult) -> bool:
        return any(j.id == jid and j.node_names and j.node_names[0] in booted.values() for j in queue.snapshot().running)

    results = _tick_until(controller, runs_on_replacement, timeout=40, what="the job running on the replacement", before=before)
    assert not any(r.executed.errors for r in results), [r.executed.errors for r in results]
    (repl_id,) = booted
    assert repl_id != iid and store.get_instance(repl_id).state is InstanceState.JOINED  # type: ignore[union-attr]
    j = cluster.show_job(jid)
    assert int(j["Priority"]) == prio_before and j.get("Restarts") == "1", j
    (rel,) = [r for r in store.audit_rows(kind="spot", limit=50) if r.action == "release"]
    assert rel.data["jobs"] == [jid] and f"replacement {repl_id} joined" in rel.reason
