"""SlurmQueue.snapshot against a real Slurm 22.05: pending reasons, gangs, TRES forms, GPU use."""

from __future__ import annotations

import time

import pytest

from burst.domain import JobState
from burst.queues.slurm.adapter import SlurmQueue
from burst.queues.slurm.settings import BurstRules, SlurmSettings
from tests.support.slurm_cluster import SlurmCluster, wait_for

pytestmark = pytest.mark.slurm


def test_idle_cluster_nodes(queue: SlurmQueue) -> None:
    snap = queue.snapshot()
    assert snap.pending == () and snap.running == ()
    names = sorted(n.name for n in snap.nodes)
    assert names == ["gpu01", "gpu02", "gpu03", "gpu04"]  # FUTURE pool is not in sinfo
    for n in snap.nodes:
        assert (n.gpus, n.gpus_used, n.gpu_model, n.schedulable) == (8, 0, "a100", True)
        assert n.instance_id == "" and not n.is_cloud
        assert n.idle and n.gpus_free == 8


def test_full_cluster_pending_reasons_gangs_and_tres(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    t_submit = time.time()
    fillers = cluster.fill_onprem()
    gang = cluster.sbatch("-N", "2", "--gres=gpu:8", "--job-name=gang")
    per_job = cluster.sbatch("--gpus=12", "--job-name=perjob")
    per_task = cluster.sbatch("--ntasks=2", "--gpus-per-task=3", "--job-name=pertask")
    typed = cluster.sbatch("--gres=gpu:a100:4", "--job-name=typed")

    def reasons_settled() -> bool:
        snap = queue.snapshot()
        reasons = {j.id: j.reason for j in snap.pending}
        return reasons.get(gang) == "Resources" and reasons.get(typed) == "Priority"

    wait_for(reasons_settled, 15, "pending reasons to be computed")
    snap = queue.snapshot()
    pend = {j.id: j for j in snap.pending}
    run = {j.id: j for j in snap.running}

    assert set(run) == set(fillers)
    assert pend[gang].reason == "Resources"  # top of the queue waits for resources
    assert {pend[x].reason for x in (per_job, per_task, typed)} == {"Priority"}
    assert all(j.state is JobState.PENDING for j in pend.values())

    g = pend[gang]
    assert (g.gpus, g.nodes, g.gpus_per_node, g.per_node, g.is_gang) == (16, 2, 8, 8, True)
    assert pend[per_job].gpus == 12  # tres_per_job gres:gpu:12
    assert pend[per_task].gpus == 6  # tres_per_task gres:gpu:3 x 2 tasks
    assert (pend[typed].gpus, pend[typed].gpu_model, pend[typed].nodes) == (4, "a100", 1)
    assert g.owner == "root" and g.labels["partition"] == "gpu"
    assert g.submit_time >= int(t_submit) - 1
    # priority order: FIFO under priority/basic
    assert [j.id for j in snap.pending] == [gang, per_job, per_task, typed]

    # running jobs: elapsed time from start_time, node names, GPU use judged by GRES
    now = time.time()
    for j in run.values():
        assert j.state is JobState.RUNNING and j.start_time is not None
        assert 0 <= j.elapsed(now) < 60
        assert len(j.node_names) == 1
    nodes = {n.name: n for n in snap.nodes}
    for n in nodes.values():
        assert n.labels["state"].startswith("MIXED")  # 1 CPU of 16 used: Slurm says "mixed"
        assert n.gpus_used == 8 and n.gpus_free == 0 and n.running_jobs == 1


def test_elapsed_time_grows(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    jid = cluster.sbatch("--gres=gpu:2")
    cluster.wait_job_state(jid, "RUNNING")
    time.sleep(1.2)
    (job,) = [j for j in queue.snapshot().running if j.id == jid]
    assert job.start_time is not None and job.elapsed(time.time()) >= 1.0
    node = next(n for n in queue.snapshot().nodes if n.name == job.node_names[0])
    assert (node.gpus_used, node.gpus_free) == (2, 6)


def test_may_burst_rules(cluster: SlurmCluster) -> None:
    cluster.fill_onprem()
    plain = cluster.sbatch("--gres=gpu:8")
    cloud = cluster.sbatch("--gres=gpu:8", "--constraint=cloud")
    part = cluster.sbatch("--gres=gpu:8", "-p", "burstable")
    held = cluster.sbatch("--gres=gpu:8", "--hold")

    q = SlurmQueue(SlurmSettings(slurm_conf=cluster.conf))
    pend = {j.id: j for j in q.snapshot().pending}
    assert pend[plain].may_burst is False
    assert pend[cloud].may_burst is True  # --constraint=cloud opts in
    assert pend[part].may_burst is False
    assert pend[held].state is JobState.HELD and pend[held].reason.startswith("JobHeld")

    q2 = SlurmQueue(SlurmSettings(slurm_conf=cluster.conf, burstable=BurstRules(partitions=["burstable"])))
    pend2 = {j.id: j for j in q2.snapshot().pending}
    assert (pend2[plain].may_burst, pend2[cloud].may_burst, pend2[part].may_burst) == (False, True, True)
    q3 = SlurmQueue(SlurmSettings(slurm_conf=cluster.conf, burstable=BurstRules(accounts=["x"], all_jobs=True)))
    assert all(j.may_burst for j in q3.snapshot().pending)


def test_drained_node_is_not_schedulable(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    queue.drain_node("gpu02", "maintenance window")
    queue.drain_node("gpu02", "maintenance window")  # idempotent
    n = next(n for n in queue.snapshot().nodes if n.name == "gpu02")
    assert not n.schedulable and n.gpus_free == 0 and "DRAIN" in n.labels["state"]
    assert n.labels["reason"] == "maintenance window"
    t0 = time.monotonic()
    queue.undrain_node("gpu02", "done")
    queue.undrain_node("gpu02", "done")

    # Slurm marks an undrained node NOT_RESPONDING until its next ping (well under a second)
    def back() -> bool:
        n = next(n for n in queue.snapshot().nodes if n.name == "gpu02")
        return n.schedulable and n.gpus_free == 8

    wait_for(back, 15, "gpu02 back in service")
    print(f"\n[slurm] undrain -> schedulable in {time.monotonic() - t0:.2f}s")
