"""Issue 6, end to end on REAL Slurm: a full on-prem cluster, a job that may burst, and the real
``Controller.tick(time.time())`` launching cloud capacity, the job running there, and the capacity
given back (drain -> removed from Slurm -> instance terminated).

A burst instance joins Slurm as a dynamic node named after the instance (the one mechanism;
why: burst/queues/slurm/adapter.py). Two providers are exercised:

* **SimProvider**: the harness plays the booted instance through SimProvider's ``on_ready`` hook
  (``slurmd -Z -N <instance id>``, as the shipped user data does), and the dying instance through
  ``on_gone``.
* **AwsProvider on moto** (the shipped ``builtin:slurm`` user data). The harness reads the user
  data back from EC2 (``DescribeInstanceAttribute``), and once EC2 reports the instance running
  it starts ``slurmd -Z -N <node> --conf "... Feature=<features>"`` with the node name and
  features taken from that user data. When EC2 reports it terminated, the harness stops that
  slurmd.

Every step is asserted in Slurm's own view (squeue / scontrol), in the controller's snapshot, in
the store and in the cloud; the wall-clock time between steps is printed (run with ``-s``).
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest

from burst.controller import Controller, TickResult
from burst.domain import Drain, InstanceState, Launch, Terminate
from burst.ports import Store
from burst.queues.slurm.adapter import SlurmQueue
from burst.queues.slurm.parse import node_name_for
from burst.queues.slurm.settings import BurstRules, SlurmSettings
from burst.sim.clock import WallClock
from burst.sim.cloud import SimInstance, SimProvider
from burst.store.memory import MemoryStore
from burst.store.sql import SqlStore
from policies import PolicyConfig
from policies.model import OverflowConfig, ScaleInConfig
from providers.aws import AwsProvider
from tests.aws.helpers import settings_factory
from tests.e2e.conftest import CLUSTER, REGION, Timeline, aws_offers, tick_until
from tests.support.moto_server import MotoServer
from tests.support.slurm_cluster import SlurmCluster, wait_for

pytestmark = pytest.mark.slurm

# Burst on the first tick (threshold 0); give idle capacity back after 1 s; tick every ~0.2 s.
POLICY = PolicyConfig(
    overflow=OverflowConfig(wait_threshold_s=0),
    scale_in=ScaleInConfig(idle_timeout_s=1, join_timeout_s=120),
    tick_interval_s=1,
)
JOB_SECONDS = 3


def slurm_settings(cluster: SlurmCluster) -> SlurmSettings:
    return SlurmSettings(
        slurm_conf=cluster.conf, timeout_s=10, burstable=BurstRules(partitions=["burstable"])
    )


# ---- Slurm's own view ------------------------------------------------------------------------


def squeue_job(cluster: SlurmCluster, jid: str) -> tuple[str, str, str]:
    """(state, node list, reason) as squeue prints them; empty strings when squeue has no row."""
    out = cluster.run("squeue", "-h", "-j", jid, "-o", "%T|%N|%r", check=False).stdout.strip()
    if not out:
        return "", "", ""
    state, nodes, reason = (out.splitlines()[0].split("|") + ["", ""])[:3]
    return state, nodes, reason


def scontrol_node(cluster: SlurmCluster, name: str, future: bool = True) -> dict[str, str]:
    """``scontrol [--future] show node -o NAME`` as a dict; {} when Slurm does not know the node."""
    args = ["scontrol", *(["--future"] if future else []), "show", "node", "-o", name]
    cp = cluster.run(*args, check=False)
    if cp.returncode != 0 or "NodeName=" not in cp.stdout:
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", cp.stdout))


def sinfo_nodes(cluster: SlurmCluster) -> set[str]:
    return set(cluster.run("sinfo", "-h", "-N", "-o", "%N").stdout.split())


def submit_overflow_job(cluster: SlurmCluster, tl: Timeline, *opts: str) -> str:
    jid = cluster.sbatch(*opts, "--job-name=overflow", script=f"#!/bin/sh\nsleep {JOB_SECONDS}\n")

    def pending_with_reason() -> bool:
        state, _, reason = squeue_job(cluster, jid)
        return state == "PENDING" and reason not in ("", "None")

    wait_for(pending_with_reason, 15, f"job {jid} to pend with a reason")
    tl.mark(f"job {jid} PENDING ({squeue_job(cluster, jid)[2]})")
    return jid


# ---- the cycle, shared by both variants ------------------------------------------------------


class Watch:
    """Marks the first tick at which the store shows each instance state."""

    def __init__(self, store: Store, tl: Timeline) -> None:
        self.store = store
        self.tl = tl
        self.iid = ""
        self.seen: list[InstanceState] = []

    def __call__(self, res: TickResult) -> None:
        if not self.iid:
            return
        inst = self.store.get_instance(self.iid)
        if inst is not None and (not self.seen or self.seen[-1] is not inst.state):
            self.seen.append(inst.state)
            self.tl.mark(f"store: {inst.state.value}")


def launched_instance(results: list[TickResult], jid: str) -> str:
    launches = [a for r in results for a in r.plan.actions if isinstance(a, Launch)]
    assert len(launches) == 1, f"expected one Launch, got {launches}"
    (lc,) = launches
    assert lc.for_jobs == (jid,) and lc.offer.cloud == "aws" and lc.offer.gpu_count >= 8
    assert results[-1].executed.launched == [lc.intent_id]
    print(f"[e2e] Launch reason: {lc.reason}")
    return lc.intent_id


def run_cycle(
    cluster: SlurmCluster,
    controller: Controller,
    store: Store,
    tl: Timeline,
    jid: str,
    *,
    before: Any,
    node_of: Any,
    launched_in_slurm: Any,
    removed_in_slurm: Any,
    cloud_terminated: Any,
) -> tuple[str, str, list[TickResult]]:
    """Launch -> join -> job runs there -> job done -> drain -> remove + terminate. Returns
    (instance id, node name, every tick's result)."""
    watch = Watch(store, tl)
    everything: list[TickResult] = []

    # (2) the first tick launches: threshold 0, so the pending job bursts at once
    _, results = tick_until(controller, lambda r: r.executed.launched, timeout=10, what="a launch",
                            before=before)
    everything += results
    assert len(results) == 1, "with wait_threshold_s=0 the first tick must launch"
    iid = launched_instance(results, jid)
    watch.iid = iid
    tl.mark(f"tick 1: Launch {iid} (intent written, provider.launch called)")
    watch(results[-1])
    assert store.get_instance(iid).state is InstanceState.LAUNCHING  # type: ignore[union-attr]
    launched_in_slurm(iid)  # what Slurm shows between the launch and the boot
    assert squeue_job(cluster, jid)[0] == "PENDING"

    # (3) the harness boots the instance (in ``before``); the controller sees the node join
    def joined(r: TickResult) -> bool:
        inst = store.get_instance(iid)
        return inst is not None and inst.state is InstanceState.JOINED

    _, results = tick_until(controller, joined, timeout=30, what=f"{iid} to join Slurm", before=before, after=watch)
    everything += results
    node = node_of(iid)
    assert node, "the harness booted no node"
    inst = store.get_instance(iid)
    assert inst is not None and inst.node_name == node
    snap_node = next(n for n in results[-1].snapshot.nodes if n.name == node)  # type: ignore[union-attr]
    assert snap_node.instance_id == iid and snap_node.is_cloud and snap_node.gpus == 8
    n = scontrol_node(cluster, node)
    assert n.get("State", "").split("+")[0] in ("IDLE", "MIXED", "ALLOCATED"), n
    assert "cloud" in n.get("AvailableFeatures", "").split(","), n
    # no second instance was launched for the job while the first was booting
    assert sum(len(r.executed.launched) for r in everything) == 1

    # (4) the job runs on the burst node: Slurm's own view, then the snapshot
    def job_on_burst_node(r: TickResult) -> bool:
        state, nodes, _ = squeue_job(cluster, jid)
        return state == "RUNNING" and nodes == node

    _, results = tick_until(controller, job_on_burst_node, timeout=30, what=f"job {jid} RUNNING on {node}",
                            before=before, after=watch)
    everything += results
    tl.mark(f"squeue: job {jid} RUNNING on {node}")
    snap = controller.queue.snapshot()
    running = {j.id: j for j in snap.running}
    assert running[jid].node_names == (node,)
    sn = next(x for x in snap.nodes if x.name == node)
    assert (sn.instance_id, sn.gpus_used, sn.running_jobs) == (iid, 8, 1)
    assert jid not in {j.id for j in snap.pending}

    # (5) the job finishes; the busy node is never drained while it runs
    def job_done(r: TickResult) -> bool:
        return cluster.job_state(jid) == "COMPLETED"

    _, results = tick_until(controller, job_done, timeout=JOB_SECONDS + 20, what=f"job {jid} to complete",
                            before=before, after=watch)
    everything += results
    tl.mark(f"scontrol: job {jid} COMPLETED")
    early = [a for r in results[:-1] for a in r.plan.actions if isinstance(a, Drain | Terminate)]
    assert not early, f"drained/terminated before Slurm reported the job COMPLETED: {early}"

    # ... idle -> Drain (Slurm shows DRAIN) ...
    def draining(r: TickResult) -> bool:
        return any(isinstance(a, Drain) for a in r.plan.actions)

    _, results = tick_until(controller, draining, timeout=15, what=f"{node} to be drained",
                            before=before, after=watch)
    everything += results
    drain_tick = results[-1]
    assert drain_tick.executed.drained == [iid]
    state = scontrol_node(cluster, node).get("State", "")
    assert "DRAIN" in state, state
    tl.mark(f"scontrol: {node} {state}")

    # ... next tick(s): Terminate -> node removed from Slurm, instance terminated in the cloud
    def terminated(r: TickResult) -> bool:
        inst = store.get_instance(iid)
        return inst is not None and inst.state is InstanceState.TERMINATED

    _, results = tick_until(controller, terminated, timeout=15, what=f"{iid} TERMINATED in the store",
                            before=before, after=watch)
    everything += results
    term_actions = [a for r in results for a in r.plan.actions if isinstance(a, Terminate)]
    assert [a.instance_id for a in term_actions][:1] == [iid], term_actions
    removed_in_slurm(node)
    tl.mark(f"Slurm: {node} removed")
    cloud_terminated(iid)
    tl.mark("cloud: instance terminated")

    # the books: the audit trail holds the whole lifecycle, with reasons
    states = [s.value for s in watch.seen]
    assert states[0] == "launching" and states[-1] == "terminated"
    assert "joined" in states and "draining" in states
    rows = store.audit_rows(subject=iid, limit=100)
    print(f"[e2e] audit of {iid}: " + "; ".join(f"{getattr(r, 'action', '')}: {getattr(r, 'reason', '')}"
                                                for r in reversed(rows)))

    # a few more ticks: nothing comes back, nothing is launched again
    for _ in range(3):
        res = controller.tick(time.time())
        everything.append(res)
        assert not res.executed.launched and not res.plan.actions, res.plan.actions
    assert node not in sinfo_nodes(cluster)
    # over the whole cycle: one launch, and the only instance ever terminated is that one
    actions = [(r.now, a) for r in everything for a in r.plan.actions]
    assert [a.intent_id for _, a in actions if isinstance(a, Launch)] == [iid], actions
    assert {a.instance_id for _, a in actions if isinstance(a, Terminate)} == {iid}, actions
    assert [i.id for i in store.instances()] == [iid]
    return iid, node, everything


# ---- variant 1: SimProvider, dynamic node started when the instance is ready --------------------


@pytest.mark.parametrize("gres", ["gpu:8", "gpu:a100:8"])
def test_overflow_cycle_sim_provider_dynamic_node(cluster: SlurmCluster, gres: str) -> None:
    """``gpu:a100:8`` names the GPU model the way Slurm's GRES type spells it (lower case), which
    the catalog spells ``A100``: the job must burst all the same."""
    tl = Timeline(f"real Slurm + SimProvider + dynamic node named after the instance, --gres={gres}")
    queue = SlurmQueue(slurm_settings(cluster))
    cluster.fill_onprem()
    tl.mark("on-prem full: 4 x 8 GPUs RUNNING fillers")
    jid = submit_overflow_job(cluster, tl, "--constraint=cloud", f"--gres={gres}")
    job = next(j for j in queue.snapshot().pending if j.id == jid)
    assert job.may_burst and job.gpus == 8 and job.gpu_model == ("a100" if "a100" in gres else "")

    booted: dict[str, str] = {}

    def on_ready(inst: SimInstance, t: float) -> None:
        name = node_name_for(inst.burst_id)  # what the builtin:slurm user data registers
        cluster.start_dynamic_node(name, "cloud,aws")
        booted[inst.burst_id] = name

    def on_gone(inst: SimInstance, t: float) -> None:
        if inst.burst_id in booted:
            cluster.stop_burst_node(booted[inst.burst_id])  # its slurmd and job processes die

    provider = SimProvider("aws", CLUSTER, WallClock(), boot_s=1.0, running_after_s=0.3,
                           billing_minimum_s=0, on_ready=on_ready, on_gone=on_gone)
    store = MemoryStore()
    controller = Controller(cluster=CLUSTER, queue=queue, providers={"aws": provider}, store=store,
                            offers=aws_offers(), policy=POLICY)

    def removed(node: str) -> None:
        assert scontrol_node(cluster, node) == {}, "a dynamic node is deleted from Slurm"
        assert node not in sinfo_nodes(cluster)
        assert not cluster.slurmd_running(node)

    def cloud_gone(iid: str) -> None:
        assert provider.list_instances() == ()
        (si,) = provider.instances.values()
        assert si.burst_id == iid and si.terminated_at is not None

    def not_yet_in_slurm(iid: str) -> None:
        assert scontrol_node(cluster, node_name_for(iid)) == {} and iid not in sinfo_nodes(cluster)

    def before(now: float) -> None:
        provider.advance(now)

    iid, node, results = run_cycle(cluster, controller, store, tl, jid, before=before,
                                   node_of=lambda i: booted.get(i, ""), launched_in_slurm=not_yet_in_slurm,
                                   removed_in_slurm=removed, cloud_terminated=cloud_gone)
    assert booted == {iid: node} and node == iid  # instance_node_prefix "": named after the instance
    assert provider.calls["launch"] == 1
    tl.report()


# ---- variant 2: AwsProvider on moto, dynamic node named by the user data -------------------------


def _user_data(ec2: Any, cloud_id: str) -> str:
    attr = ec2.describe_instance_attribute(InstanceId=cloud_id, Attribute="userData")
    return base64.b64decode(attr["UserData"]["Value"]).decode()


def _ec2_instances(ec2: Any, iid: str) -> list[dict[str, Any]]:
    out = ec2.describe_instances(Filters=[{"Name": "tag:burst:id", "Values": [iid]}])
    return [i for r in out["Reservations"] for i in r["Instances"]]


def test_overflow_cycle_aws_moto_dynamic_node(cluster: SlurmCluster, moto: MotoServer, ec2: Any,
                                              tmp_path: Path) -> None:
    tl = Timeline("real Slurm + AwsProvider on moto + dynamic node from the builtin:slurm user data")
    queue = SlurmQueue(slurm_settings(cluster))
    settings = settings_factory(moto.endpoint_url)(
        user_data_template="builtin:slurm",
        template_vars={"slurmctld_host": f"127.0.0.1:{cluster.ctld_port}", "munge_key_ssm_param": ""},
    )
    provider = AwsProvider(settings, cluster=CLUSTER)
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    offers = [o for o in aws_offers() if o.zone in settings.regions[REGION].subnets]
    controller = Controller(cluster=CLUSTER, queue=queue, providers={"aws": provider}, store=store,
                            offers=offers, policy=POLICY)
    tl.mark("set-up: moto, AwsProvider, SQLite store")

    cluster.fill_onprem()
    tl.mark("on-prem full: 4 x 8 GPUs RUNNING fillers")
    # opts in twice over: the cloud constraint and the burstable partition
    jid = submit_overflow_job(cluster, tl, "--constraint=cloud", "--partition=burstable", "--gres=gpu:8")

    booted: dict[str, str] = {}
    stopped: set[str] = set()

    def before(now: float) -> None:
        """The harness's cloud side: boot what EC2 runs, kill what EC2 terminated."""
        for inst in store.live_instances() + [i for i in store.instances() if i.state is InstanceState.TERMINATED]:
            if not inst.cloud_id:
                continue
            (ec2_inst,) = _ec2_instances(ec2, inst.id)
            state = ec2_inst["State"]["Name"]
            if state == "running" and inst.id not in booted:
                text = _user_data(ec2, inst.cloud_id)
                name = re.search(r"slurmd .*-Z -N (\S+)", text)
                feats = re.search(r"Feature=([^\s\"]+)", text)
                assert name and feats, f"no slurmd -Z line in the user data:\n{text}"
                tl.mark(f"EC2: {inst.cloud_id} running; user data says node {name.group(1)}")
                cluster.start_dynamic_node(name.group(1), feats.group(1))
                booted[inst.id] = name.group(1)
                tl.mark(f"slurmd -Z -N {name.group(1)} registered ({feats.group(1)})")
            elif state == "terminated" and inst.id in booted and inst.id not in stopped:
                cluster.stop_burst_node(booted[inst.id])
                stopped.add(inst.id)

    def removed(node: str) -> None:
        assert scontrol_node(cluster, node) == {}, "a dynamic node is deleted from Slurm"
        before(time.time())  # the harness sees EC2's terminated state and stops the slurmd
        assert not cluster.slurmd_running(node)

    def cloud_gone(iid: str) -> None:
        (ec2_inst,) = _ec2_instances(ec2, iid)
        assert ec2_inst["State"]["Name"] == "terminated", ec2_inst["State"]
        assert {t["Key"]: t["Value"] for t in ec2_inst["Tags"]}["burst:cluster"] == CLUSTER
        inst = store.get_instance(iid)
        assert inst is not None and inst.state is InstanceState.TERMINATED and inst.terminated_at

    def not_yet_in_slurm(iid: str) -> None:
        assert scontrol_node(cluster, iid) == {} and iid not in sinfo_nodes(cluster)

    iid, node, results = run_cycle(cluster, controller, store, tl, jid, before=before,
                                   node_of=lambda i: booted.get(i, ""), launched_in_slurm=not_yet_in_slurm,
                                   removed_in_slurm=removed, cloud_terminated=cloud_gone)
    assert node == iid  # instance_node_prefix "": the node is named after the instance
    assert moto.count("RunInstances") == 1 and moto.count("TerminateInstances") == 1
    (req,) = moto.requests("RunInstances")
    assert req.params.get("ClientToken") == iid  # the intent id is the idempotency key
    tl.report()
    store.close()


# ---- a job that may NOT burst never causes a launch -----------------------------------------------


def test_job_that_may_not_burst_never_launches(cluster: SlurmCluster, moto: MotoServer, tmp_path: Path) -> None:
    tl = Timeline("real Slurm + AwsProvider on moto: a job that may not burst")
    queue = SlurmQueue(slurm_settings(cluster))
    settings = settings_factory(moto.endpoint_url)(
        template_vars={"slurmctld_host": f"127.0.0.1:{cluster.ctld_port}", "munge_key_ssm_param": ""},
    )
    provider = AwsProvider(settings, cluster=CLUSTER)
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    offers = [o for o in aws_offers() if o.zone in settings.regions[REGION].subnets]
    controller = Controller(cluster=CLUSTER, queue=queue, providers={"aws": provider}, store=store,
                            offers=offers, policy=POLICY)
    cluster.fill_onprem()
    tl.mark("on-prem full")
    # no cloud constraint, default (non-burstable) partition: it waits for on-prem GPUs
    jid = submit_overflow_job(cluster, tl, "--partition=gpu", "--gres=gpu:8")
    job = next(j for j in queue.snapshot().pending if j.id == jid)
    assert not job.may_burst and job.state.value == "pending"

    results: list[TickResult] = []
    t_end = time.monotonic() + 3.0
    while len(results) < 12 or time.monotonic() < t_end:
        results.append(controller.tick(time.time()))
        time.sleep(0.1)
    waited = time.time() - job.submit_time
    tl.mark(f"{len(results)} ticks, the job waited {waited:.1f}s (threshold 0 s): no launch")
    assert all(not r.skipped for r in results)
    assert not any(isinstance(a, Launch) for r in results for a in r.plan.actions)
    assert store.instances() == [] and provider.list_instances() == []
    assert moto.count("RunInstances") == 0
    assert squeue_job(cluster, jid)[0] == "PENDING"

    # control: the same controller, a job that opts in through the burstable partition alone
    jid2 = submit_overflow_job(cluster, tl, "--partition=burstable", "--gres=gpu:8")
    _, more = tick_until(controller, lambda r: r.executed.launched, timeout=10, what="a launch for the control job")
    (lc,) = [a for r in more for a in r.plan.actions if isinstance(a, Launch)]
    assert lc.for_jobs == (jid2,), "only the burstable job is launched for"
    assert moto.count("RunInstances") == 1
    tl.mark("control job (burstable partition) launched on the next tick")
    tl.report()
    store.close()
