"""SlurmQueue as a grand challenge's queue (burst.ports.ChallengeQueue), on real Slurm 22.05: each
Slurm behaviour the adapter works around is measured here (see the comment above
SlurmQueue._job_states)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from burst.domain import ChallengeJobKind, GrandChallenge, JobState
from burst.errors import QueueError
from burst.ports import ChallengeQueue
from burst.queues.slurm.adapter import SlurmQueue
from tests.support.slurm_cluster import SlurmCluster, wait_for

pytestmark = pytest.mark.slurm

LOOP = "#!/bin/sh\ntrap 'exit 143' TERM\nwhile true; do sleep 0.2; done\n"


def gc(text: str = "#!/bin/sh\nsleep 30\n", kind: ChallengeJobKind = ChallengeJobKind.SLURM) -> GrandChallenge:
    return GrandChallenge(id="gc-t1", name="t", start_at=time.time(), duration_s=120, command="(inline)",
                          created_by="admin", job_kind=kind, job_text=text)


def test_slurm_queue_is_a_challenge_queue(queue: SlurmQueue) -> None:
    assert isinstance(queue, ChallengeQueue)


def test_checkpoint_of_a_pending_job_returns_at_once(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    """``scancel --signal --batch`` on a pending job blocks until the client times out (measured:
    the full timeout); the adapter signals only running jobs."""
    cluster.fill_onprem()
    pend = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu01")
    t0 = time.monotonic()
    queue.checkpoint([pend, "999999"])
    assert time.monotonic() - t0 < 7.0  # not the client's 10 s timeout (room for a loaded machine)
    assert cluster.job_state(pend) == "PENDING"


def test_hold_a_no_requeue_job_makes_it_requeueable_first(cluster: SlurmCluster, queue: SlurmQueue,
                                                          tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    jid = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu02", "--no-requeue",
                         script=f"#!/bin/sh\necho r=${{SLURM_RESTART_COUNT:-0}} >> {runs}\n" + LOOP.split("\n", 1)[1])
    cluster.wait_job_state(jid, "RUNNING")
    queue.hold([jid])
    queue.hold([jid])  # idempotent: already requeued in held state
    wait_for(lambda: any(j.id == jid and j.state is JobState.HELD for j in queue.snapshot().pending),
             15, "the --no-requeue job to be held")
    queue.release([jid])
    queue.set_priority(jid, 7777)
    info = cluster.wait_job_state(jid, "RUNNING", timeout=30)
    assert info["Restarts"] == "1" and info["Priority"] == "7777"
    wait_for(lambda: "r=1" in runs.read_text(), 10, "the second run")


def test_hold_never_requeues_a_finished_job(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    """Slurm lets ``requeuehold`` requeue a finished batch job (it would run again on release)."""
    jid = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu03", script="#!/bin/sh\nexit 0\n")
    wait_for(lambda: cluster.job_state(jid) == "COMPLETED", 20, "the job to complete")
    queue.hold([jid, "999999"])
    queue.release([jid])
    queue.set_priority(jid, 100)  # finished: success
    time.sleep(1.5)
    assert cluster.job_state(jid) == "COMPLETED"


def test_priority_is_set_after_release(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    cluster.fill_onprem()
    jid = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu01")
    queue.hold([jid])
    with pytest.raises(QueueError, match="held state"):
        queue.set_priority(jid, 5000)  # Slurm refuses a priority on a held job
    queue.release([jid])
    queue.set_priority(jid, 5000)
    assert cluster.show_job(jid)["Priority"] == "5000"
    queue.set_priority("999999", 1)  # unknown: success


def test_reservation_takes_busy_on_prem_nodes_only(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    cluster.fill_onprem()  # busy nodes: only IGNORE_JOBS lets the reservation be made
    start = time.time() + 3600
    assert queue.create_reservation("burst-gc-x", start, 600, nodes=["gpu01", "gpu02"]) == "burst-gc-x"
    assert queue.create_reservation("burst-gc-x", start + 5, 600, nodes=["gpu01", "gpu02"]) == "burst-gc-x"
    res = queue.reservation("burst-gc-x")
    assert res is not None and res["Nodes"] == "gpu[01-02]" and "IGNORE_JOBS" in res["Flags"]
    assert res["Users"] == "root" and res["Duration"] == "00:11:00"  # 10 min + a minute's slack
    for bad in (["ALL"], [], ["burst01"], ["gpu09"]):
        with pytest.raises(QueueError):
            queue.create_reservation("burst-gc-bad", start, 600, nodes=bad)
    assert queue.reservation("burst-gc-bad") is None
    queue.delete_reservation("burst-gc-x")
    queue.delete_reservation("burst-gc-x")  # gone: success
    assert queue.reservation("burst-gc-x") is None


def test_submit_challenge_is_idempotent_on_its_name(cluster: SlurmCluster, queue: SlurmQueue, tmp_path: Path) -> None:
    out = tmp_path / "gc.out"
    queue.create_reservation("burst-gc-t1", None, 300, nodes=["gpu03", "gpu04"])
    script = f"#!/bin/sh\n#SBATCH --output={out}\necho on $SLURM_JOB_NODELIST\nsleep 30\n"
    jid = queue.submit_challenge(gc(script), name="burst-gc-t1", reservation="burst-gc-t1", nodes=["gpu03", "gpu04"])
    assert queue.submit_challenge(gc(script), name="burst-gc-t1", reservation="burst-gc-t1",
                                  nodes=["gpu03", "gpu04"]) == jid
    info = cluster.wait_job_state(jid, "RUNNING", timeout=20)
    assert info["Reservation"] == "burst-gc-t1" and info["NodeList"] == "gpu[03-04]"
    (job,) = [j for j in queue.snapshot().running if j.id == jid]  # a GPU job: the runner sees it
    assert job.gpus == 16 and job.time_limit_s == 120
    queue.cancel([jid])
    wait_for(lambda: cluster.job_state(jid) == "CANCELLED", 10, "the challenge job to end")
    # finished, but still known: never submitted again
    assert queue.submit_challenge(gc(script), name="burst-gc-t1", reservation="burst-gc-t1",
                                  nodes=["gpu03", "gpu04"]) == jid


def test_submit_challenge_refusals_are_queue_errors(cluster: SlurmCluster, queue: SlurmQueue) -> None:
    with pytest.raises(QueueError, match="kubernetes"):
        queue.submit_challenge(gc("kind: Job\n", ChallengeJobKind.KUBERNETES), name="burst-gc-k",
                               reservation="r", nodes=["gpu01"])
    with pytest.raises(QueueError, match="reservation"):
        queue.submit_challenge(gc(), name="burst-gc-r", reservation="no-such-reservation", nodes=["gpu01"])
    assert queue.jobs_named("burst-gc-r") == []
