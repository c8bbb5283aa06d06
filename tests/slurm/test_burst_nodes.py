"""Burst nodes join and leave in Slurm's own view (FUTURE pool, RECIPES "Slurm burst nodes").

The harness plays the booted instance: ``cluster.start_burst_node(name)`` runs ``slurmd -N name``
(what the user-data template does on a real instance). Timings are printed with ``-s``.
"""

from __future__ import annotations

import time

import pytest

from burst.domain import JobState
from burst.queues.slurm import BurstRules, NodeBusy, PoolExhausted, SlurmQueue, SlurmSettings
from tests.support.slurm_cluster import SlurmCluster, wait_for

pytestmark = pytest.mark.slurm

IID1 = "b-1a2b3c4d5e6f7a8b"
IID2 = "b-0000aaaa1111bbbb"


def _job(queue: SlurmQueue, jid: str):  # type: ignore[no-untyped-def]
    snap = queue.snapshot()
    return next((j for j in snap.pending + snap.running if j.id == jid), None)


def test_cloud_job_runs_on_joined_burst_node_then_node_leaves(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    marks: list[tuple[str, float]] = [("start", time.monotonic())]

    def mark(what: str) -> None:
        marks.append((what, time.monotonic()))

    cluster.fill_onprem()  # trap: the fillers must be RUNNING before a burst node joins
    mark("on-prem full")
    jid = cluster.sbatch("--constraint=cloud", "--gres=gpu:8", "--job-name=overflow",
                         script="#!/bin/sh\nsleep 3\n")
    wait_for(lambda: (j := _job(queue, jid)) is not None and j.reason != "", 10, "a pending reason")
    job = _job(queue, jid)
    assert job is not None and job.state is JobState.PENDING and job.may_burst
    print(f"\n[slurm] --constraint=cloud job pends with reason {job.reason!r}")

    # the controller reserves a pool node for the instance it is about to launch
    node = queue.assign_node(IID1, "aws", "us-east-1")
    assert node == "burst01"
    assert queue.assign_node(IID1, "aws", "us-east-1") == "burst01"  # idempotent
    assert queue.assign_node(IID2, "aws", "us-east-1") == "burst02"  # next free one
    assert queue.instance_node(IID1) == "burst01"
    with pytest.raises(PoolExhausted):
        queue.assign_node("b-azure000000000", "azure", "eastus")  # the pool is aws-only
    assert "burst01" not in {n.name for n in queue.snapshot().nodes}  # still FUTURE
    mark("node assigned")

    join_s = cluster.start_burst_node(node)  # the instance boots and its slurmd registers
    mark("slurmd registered")

    def running_on_burst() -> bool:
        j = _job(queue, jid)
        return j is not None and j.state is JobState.RUNNING and j.node_names == (node,)

    wait_for(running_on_burst, 20, f"job {jid} running on {node}")
    mark("job running on burst01")
    snap = queue.snapshot()
    bn = next(n for n in snap.nodes if n.name == node)
    assert bn.instance_id == IID1 and bn.is_cloud and bn.labels.get("cloud") == "true"
    assert (bn.gpus, bn.gpus_used, bn.running_jobs) == (8, 8, 1)
    assert all(not n.is_cloud for n in snap.nodes if n.name.startswith("gpu"))

    # removing a node with a running job is refused
    with pytest.raises(NodeBusy):
        queue.remove_node(node)
    assert not next(n for n in queue.snapshot().nodes if n.name == node).schedulable  # drained

    wait_for(lambda: _job(queue, jid) is None, 20, f"job {jid} to finish")
    mark("job finished")
    queue.drain_node(node, "burst: idle")
    queue.remove_node(node)
    mark("drain + remove")
    cluster.stop_burst_node(node)  # the instance is terminated
    queue.remove_node(node)  # idempotent
    queue.remove_node("burst02")  # the never-booted reservation is given back too
    queue.remove_node("nosuchnode")  # unknown node: success

    assert node not in {n.name for n in queue.snapshot().nodes}
    pool = {p.name: p for p in queue.pool()}
    assert pool[node].is_future and pool[node].instance_id == ""
    assert pool["burst02"].instance_id == ""
    assert cluster.node_state(node) == ""  # FUTURE nodes are hidden without --future
    queue.drain_node(node, "again")  # draining a FUTURE node does nothing (no FUTURE+DRAIN)
    assert pool[node].state == "FUTURE" and queue.node_info(node).state == "FUTURE"  # type: ignore[union-attr]

    print(f"[slurm] slurmd -N {node} -> node in service: {join_s:.2f}s")
    for (a, ta), (b, tb) in zip(marks, marks[1:], strict=False):
        print(f"[slurm]   {a:>22} -> {b:<24} {tb - ta:6.2f}s")


def test_unconstrained_gang_lands_on_two_burst_nodes(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    cluster.fill_onprem()
    jid = cluster.sbatch("-N", "2", "--gres=gpu:8", script="#!/bin/sh\nsleep 60\n")
    wait_for(lambda: (j := _job(queue, jid)) is not None and j.reason == "Resources", 10, "Resources")
    job = _job(queue, jid)
    assert job is not None and job.is_gang and job.gpus == 16 and not job.may_burst
    names = [queue.assign_node(f"b-gang{i:012d}", "aws") for i in range(2)]
    assert names == ["burst01", "burst02"]
    t0 = time.monotonic()
    for n in names:
        cluster.start_burst_node(n)
    wait_for(lambda: (j := _job(queue, jid)) is not None and j.state is JobState.RUNNING, 20, "gang running")
    print(f"\n[slurm] 2-node gang running on burst nodes {time.monotonic() - t0:.2f}s after the slurmds started")
    job = _job(queue, jid)
    assert job is not None and sorted(job.node_names) == names

    # forced removal: state=down requeues the gang, then the node returns to FUTURE (a call may
    # meet NodeBusy while the jobs are still completing; the controller calls again next tick)
    queue.drain_node("burst02", "spot reclaim")
    with pytest.raises(NodeBusy):
        queue.remove_node("burst02")
    t1 = time.monotonic()

    def removed() -> bool:
        try:
            queue.remove_node("burst02", force=True)
        except NodeBusy:
            return False
        return True

    wait_for(removed, 30, "burst02 back to FUTURE")
    print(f"[slurm] forced remove of a busy node: {time.monotonic() - t1:.2f}s")
    cluster.stop_burst_node("burst02")
    assert queue.node_info("burst02").is_future  # type: ignore[union-attr]
    # requeued by the down node (Slurm tears the running gang down asynchronously)
    def requeued() -> bool:
        x = _job(queue, jid)
        return x is not None and x.state is not JobState.RUNNING and x.labels.get("restart_count") == "1"

    wait_for(requeued, 15, "the gang to be requeued")


def test_harness_boots_and_terminates_instances(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    """The hooks an end-to-end controller test uses: boot/terminate by instance id."""
    node = queue.assign_node(IID1, "aws")
    assert cluster.node_for_instance(IID1) == node
    assert cluster.boot_instance(IID1) == node
    n = next(n for n in queue.snapshot().nodes if n.name == node)
    assert n.instance_id == IID1 and n.schedulable and n.idle
    queue.drain_node(node, "scale-in")
    queue.remove_node(node)
    assert cluster.terminate_instance(IID1) is None  # the reservation is gone with the node
    cluster.stop_burst_node(node)
    assert not cluster.slurmd_running(node)
    with pytest.raises(LookupError):
        cluster.boot_instance(IID1)


def test_dynamic_node_named_after_its_instance(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    """The user-data template's way (slurmd -Z -N <instance id>): recognised and removed."""
    from burst.queues.slurm import instance_id_for_node, node_name_for

    name = node_name_for(IID2)
    assert name == IID2 and instance_id_for_node(name) == IID2 and instance_id_for_node("gpu01") == ""
    cluster.fill_onprem()
    jid = cluster.sbatch("--constraint=cloud", "--gres=gpu:8", script="#!/bin/sh\nsleep 2\n")
    took = cluster.start_dynamic_node(name, "cloud,aws,us-east-1")
    wait_for(lambda: (j := _job(queue, jid)) is not None and j.node_names == (name,), 20, "job on the dynamic node")
    print(f"\n[slurm] dynamic node registered in {took:.2f}s; the job runs on it")
    n = next(n for n in queue.snapshot().nodes if n.name == name)
    assert n.instance_id == IID2 and n.is_cloud and n.gpus_used == 8
    with pytest.raises(NodeBusy):
        queue.remove_node(name)
    wait_for(lambda: _job(queue, jid) is None, 20, "the job to finish")
    queue.remove_node(name)  # scontrol delete nodename=...
    queue.remove_node(name)  # idempotent
    cluster.stop_burst_node(name)
    assert name not in {n.name for n in queue.snapshot().nodes}
    assert queue.node_info(name) is None


def test_isolation_warnings_name_partitions_that_hold_burst_nodes(cluster: SlurmCluster, settings: SlurmSettings) -> None:
    # The test cluster puts every node in both partitions (Nodes=ALL): jobs of `gpu` that did
    # not opt in could run on burst nodes; `burstable` is fine once it is a burstable partition.
    q = SlurmQueue(settings.model_copy(update={"burstable": BurstRules(partitions=["burstable"])}))
    (warning,) = q.isolation_warnings()
    assert warning.startswith("partition gpu holds ") and "burstable.partitions" in warning
    assert len(SlurmQueue(settings).isolation_warnings()) == 2
    assert SlurmQueue(settings.model_copy(update={"burstable": BurstRules(all_jobs=True)})).isolation_warnings() == []


def test_the_daemon_logs_isolation_warnings_at_start_and_survives_a_dead_controller(
    settings: SlurmSettings, caplog: pytest.LogCaptureFixture
) -> None:
    from burst.wiring import warn_isolation

    with caplog.at_level("WARNING", logger="burst.wiring"):
        assert len(warn_isolation(SlurmQueue(settings))) == 2
    assert sum("partition gpu holds" in r.getMessage() for r in caplog.records) == 1
    dead = SlurmQueue(settings.model_copy(update={"bin_dir": settings.slurm_conf.parent / "no-such-bin"}))
    caplog.clear()
    with caplog.at_level("WARNING", logger="burst.wiring"):
        assert warn_isolation(dead) == []
    assert any("partition check skipped" in r.getMessage() for r in caplog.records)
