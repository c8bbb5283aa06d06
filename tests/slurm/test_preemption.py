"""Grand-challenge preemption on real Slurm: checkpoint signal, requeue-hold, release; reservations
and submission."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from burst.domain import JobState
from burst.queues.slurm.adapter import SlurmQueue
from tests.support.slurm_cluster import SlurmCluster, wait_for

pytestmark = pytest.mark.slurm

# Checkpoint on USR1 (and keep running), exit on TERM (RECIPES: exiting 0 on USR1 would end the
# job COMPLETED and it would never be requeued).
SCRIPT = """#!/bin/bash
mark={mark}
trap 'echo "ckpt restart=${{SLURM_RESTART_COUNT:-0}}" >> $mark.ckpt' USR1
trap 'exit 143' TERM
echo "start restart=${{SLURM_RESTART_COUNT:-0}}" >> $mark.runs
while true; do sleep 0.2; done
"""


def test_checkpoint_hold_release(cluster: SlurmCluster, queue: SlurmQueue, tmp_path: Path) -> None:
    mark = tmp_path / "job"
    jid = cluster.sbatch("--gres=gpu:8", "--requeue", "--nodelist=gpu03", script=SCRIPT.format(mark=mark))
    cluster.wait_job_state(jid, "RUNNING")
    wait_for(lambda: Path(f"{mark}.runs").exists(), 10, "the job to start")

    t0 = time.monotonic()
    queue.checkpoint([jid])
    wait_for(lambda: Path(f"{mark}.ckpt").exists(), 10, "the USR1 checkpoint marker")
    print(f"\n[slurm] checkpoint signal -> marker file {time.monotonic() - t0:.2f}s")
    assert Path(f"{mark}.ckpt").read_text().strip() == "ckpt restart=0"
    assert cluster.job_state(jid) == "RUNNING"  # a checkpoint does not stop the job

    t0 = time.monotonic()
    queue.hold([jid])
    queue.hold([jid])  # idempotent

    def gpus_free() -> bool:
        snap = queue.snapshot()
        node = next(n for n in snap.nodes if n.name == "gpu03")
        held = [j for j in snap.pending if j.id == jid]
        return node.gpus_used == 0 and bool(held) and held[0].state is JobState.HELD

    wait_for(gpus_free, 15, "requeuehold to free gpu03")
    print(f"[slurm] requeuehold -> GPUs free and job HELD {time.monotonic() - t0:.2f}s")

    t0 = time.monotonic()
    queue.release([jid])
    queue.release([jid])  # idempotent
    info = cluster.wait_job_state(jid, "RUNNING", timeout=30)
    assert info["JobId"] == jid and info["Restarts"] == "1"
    wait_for(lambda: "start restart=1" in Path(f"{mark}.runs").read_text(), 10, "the second run")
    print(f"[slurm] release -> same job id running again {time.monotonic() - t0:.2f}s")
    (job,) = [j for j in queue.snapshot().running if j.id == jid]
    assert job.labels["restart_count"] == "1"

    # finished / unknown jobs: every operation is success
    queue.cancel([jid])
    queue.checkpoint(["999999"])
    queue.hold(["999999"])
    queue.release(["999999"])
    queue.cancel(["999999"])


def test_hold_pending_job(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    cluster.fill_onprem()
    jid = cluster.sbatch("--gres=gpu:8")
    queue.hold([jid])  # a pending job is held in place (no requeue needed)
    wait_for(lambda: any(j.id == jid and j.state is JobState.HELD for j in queue.snapshot().pending),
             10, "the pending job to be held")
    queue.release([jid])
    wait_for(lambda: any(j.id == jid and j.state is JobState.PENDING for j in queue.snapshot().pending),
             10, "the job to be pending again")


def test_reservation_and_submit(cluster: SlurmCluster, queue: SlurmQueue, tmp_path: Path) -> None:
    name = queue.create_reservation("gc-test", None, 600, nodes=["gpu01", "gpu02"])
    assert queue.create_reservation("gc-test", None, 900, nodes=["gpu01", "gpu02"]) == name  # idempotent
    (resv,) = [r for r in queue.reservations() if r["ReservationName"] == name]
    assert resv["Nodes"] == "gpu[01-02]"

    out = tmp_path / "gc.out"
    jid = queue.submit("echo grand-challenge on $SLURM_JOB_NODELIST\n", job_name="gc", nodes=2,
                       gpus_per_node=8, time_limit_s=120, reservation=name, output=str(out),
                       workdir=str(tmp_path))
    assert jid.isdigit()
    wait_for(lambda: out.exists() and "grand-challenge on gpu[01-02]" in out.read_text(), 20,
             "the grand-challenge job to run in its reservation")
    queue.delete_reservation(name)
    queue.delete_reservation(name)  # idempotent
    assert not [r for r in queue.reservations() if r["ReservationName"] == name]
