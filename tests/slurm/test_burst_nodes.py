"""Burst nodes join and leave in Slurm's own view: dynamic nodes named after their instance
(the mechanism and its reasons: burst/queues/slurm/adapter.py).

The harness plays the booted instance: ``cluster.start_dynamic_node(name, features)`` runs
``slurmd -Z -N name`` (what the user-data template does on a real instance). Timings are printed
with ``-s``.
"""

from __future__ import annotations

import time

import pytest

from burst.domain import JobState
from burst.errors import QueueError
from burst.queues.slurm.adapter import NodeBusy, SlurmQueue
from burst.queues.slurm.parse import instance_id_for_node, node_name_for
from burst.queues.slurm.settings import BurstRules, SlurmSettings
from tests.support.slurm_cluster import SlurmCluster, wait_for

pytestmark = pytest.mark.slurm

IID1 = "b-1a2b3c4d5e6f7a8b"
IID2 = "b-0000aaaa1111bbbb"


def _job(queue: SlurmQueue, jid: str):  # type: ignore[no-untyped-def]
    snap = queue.snapshot()
    return next((j for j in snap.pending + snap.running if j.id == jid), None)


def test_dynamic_node_named_after_its_instance(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    """The user-data template's way (slurmd -Z -N <instance id>): recognised and removed."""
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
    queue.remove_node("nosuchnode")  # unknown node: success


def test_forced_removal_requeues_the_jobs_then_deletes_the_node(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    """A spot reclaim: the node must go although a job runs there. ``force`` sets state=down
    (Slurm requeues the job); a call may meet NodeBusy while the job is still completing, and the
    controller calls again on the next tick."""
    name = node_name_for(IID1)
    cluster.fill_onprem()
    jid = cluster.sbatch("--constraint=cloud", "--gres=gpu:8", script="#!/bin/sh\nsleep 60\n")
    cluster.start_dynamic_node(name, "cloud,aws")
    wait_for(lambda: (j := _job(queue, jid)) is not None and j.state is JobState.RUNNING and j.node_names == (name,),
             20, "job running on the dynamic node")
    queue.drain_node(name, "spot reclaim")
    with pytest.raises(NodeBusy):
        queue.remove_node(name)
    t1 = time.monotonic()

    def removed() -> bool:
        try:
            queue.remove_node(name, force=True)
        except NodeBusy:
            return False
        return True

    wait_for(removed, 30, f"{name} deleted")
    print(f"\n[slurm] forced remove of a busy dynamic node: {time.monotonic() - t1:.2f}s")
    cluster.stop_burst_node(name)
    assert queue.node_info(name) is None

    def requeued() -> bool:
        x = _job(queue, jid)
        return x is not None and x.state is not JobState.RUNNING and x.labels.get("restart_count") == "1"

    wait_for(requeued, 15, "the job to be requeued")


def test_a_node_that_is_not_dynamic_is_never_removed(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    """burst removes only the dynamic nodes its instances register: an on-prem node, or the
    FUTURE placeholder that lets ``--constraint=cloud`` be accepted, is refused and untouched."""
    for name in ("gpu01", "burst01"):
        with pytest.raises(QueueError, match="not a dynamic node"):
            queue.remove_node(name)
    assert "DRAIN" not in cluster.node_state("gpu01")
    info = queue.node_info("burst01")
    assert info is not None and info.is_future


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
