"""Issue 10, end to end on REAL Slurm 22.05: a grand challenge scheduled a minute ahead clears the
on-prem nodes, runs its batch script inside its reservation, and gives every preempted job back.

The ordinary ``Controller`` ticks on the wall clock (``tick(time.time())`` every ~0.5 s) with the
real :class:`SlurmQueue` as its queue and as its ``challenge_queue``, no cloud, and a SQLite
store; the challenge is stored through ``burst.grand_challenge.schedule_challenge`` (the path the
CLI and Slack use). The cluster (tests/support/slurm_cluster.py, four 8-GPU on-prem nodes) holds:

* A, B, C, D: jobs that checkpoint on USR1 and resume from their checkpoint when run again
  (``SLURM_RESTART_COUNT`` >= 1), with explicit priorities that differ from their submit order;
* E: a job with a 1-minute time limit that ends (by itself) before the start: it is not at risk
  in the notice and not preempted;
* Q: a job pending before the challenge: never preempted, never held;
* W1, W2: work submitted while the challenge runs, on the nodes of A and of B/C: after the
  challenge the preempted jobs run first.

Everything is asserted in Slurm's own view (scontrol/squeue), in the jobs' marker files and in
the store; the figures issue 10 asks for are printed (run with ``-s``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from burst.controller import Controller, TickResult
from burst.domain import ChallengeState
from burst.grand_challenge import schedule_challenge
from burst.queues.slurm.adapter import SlurmQueue
from burst.queues.slurm.settings import SlurmSettings
from burst.store.sql import SqlStore
from policies import PolicyConfig
from policies.grand_challenge import ChallengeSettings
from tests.e2e.conftest import CLUSTER, Timeline, tick_until
from tests.support.slurm_cluster import SlurmCluster, checkpoint_job, job_marks, wait_for

pytestmark = pytest.mark.slurm

SETTINGS = ChallengeSettings(
    drain_window_s=3600.0,  # reserve on the first tick: nothing new may start that would be preempted
    checkpoint_grace_s=3.0,
    release_retry_s=10.0,
    restore_poll_s=0.5,
)
TICK_S = 0.5


class Notes:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def notify(self, audience: str, text: str) -> None:
        self.sent.append((audience, text))


def started_at(marks: Path, jid: str, restart: int) -> float:
    runs = [r for r in job_marks(marks, jid)["runs"] if r["kind"] == "start" and r["restart"] == str(restart)]
    assert runs, f"job {jid} never started with restart={restart}: {job_marks(marks, jid)}"
    return float(runs[0]["at"])


def test_grand_challenge_end_to_end(cluster: SlurmCluster, tmp_path: Path) -> None:
    tl = Timeline("grand challenge on real Slurm: 4 on-prem nodes, 4 preempted jobs")
    marks = tmp_path / "marks"
    marks.mkdir()
    queue = SlurmQueue(SlurmSettings(slurm_conf=cluster.conf, timeout_s=10))
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}", upgrade=True)
    notes = Notes()
    controller = Controller(cluster=CLUSTER, queue=queue, providers={}, store=store, offers=[],
                            policy=PolicyConfig(), challenge_queue=queue, challenge_settings=SETTINGS,
                            notifier=notes)

    ckpt = checkpoint_job(marks, extra_steps=10)
    sub = {
        "A": cluster.sbatch("--gres=gpu:8", "--nodelist=gpu01", "--priority=200", "--job-name=A", script=ckpt),
        "B": cluster.sbatch("--gres=gpu:4", "--nodelist=gpu02", "--priority=400", "--job-name=B", script=ckpt),
        "C": cluster.sbatch("--gres=gpu:4", "--nodelist=gpu02", "--priority=100", "--job-name=C", script=ckpt),
        "D": cluster.sbatch("--gres=gpu:8", "--nodelist=gpu03", "--priority=300", "--job-name=D",
                            "--no-requeue", script=ckpt),  # hold must make it requeueable first
        "E": cluster.sbatch("--gres=gpu:8", "--nodelist=gpu04", "--time=1", "--job-name=E",
                            script=f"#!/bin/sh\necho start >> {marks}/E\nsleep 8\necho done >> {marks}/E\n"),
    }
    for jid in sub.values():
        cluster.wait_job_state(jid, "RUNNING")
    sub["Q"] = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu04", "--job-name=Q",
                              script=f"#!/bin/sh\necho start $(date +%s.%N) >> {marks}/Q\nsleep 2\n")
    preemptible = {sub[k] for k in "ABCD"}
    tl.mark("on-prem full: A,B,C,D checkpointable, E (1 min limit) RUNNING, Q pending")

    # E's time limit ends before the start: it may run on and is not at risk.
    e_start = time.mktime(time.strptime(cluster.show_job(sub["E"])["StartTime"], "%Y-%m-%dT%H:%M:%S"))
    start = max(time.time() + 45.0, e_start + 66.0)
    gc = schedule_challenge(
        store, now=time.time(), actor="admin", name="e2e", start_at=start, duration_s=120.0,
        onprem_nodes=len(cluster.onprem_nodes), nodes=0,
        job_text=(
            "#!/bin/sh\n"
            f"#SBATCH --output={marks}/gc-%j.out\n"
            f"echo start $(date +%s.%N) >> {marks}/gc-times\n"
            f"srun --ntasks-per-node=1 sh -c 'echo ran on $SLURMD_NODENAME' >> {marks}/gc-nodes\n"
            "sleep 5\n"
            f"echo end $(date +%s.%N) >> {marks}/gc-times\n"
        ),
        settings=SETTINGS,
    )
    tl.mark(f"challenge {gc.id} scheduled {start - time.time():.0f}s ahead")

    def phase() -> ChallengeState:
        got = store.get_challenge(gc.id)
        assert got is not None
        return got.state

    tick_until(controller, lambda r: phase() is ChallengeState.DRAINING and store.get_challenge(gc.id).reserved,
               timeout=20, what="the reservation", interval=TICK_S)
    tl.mark("notified, reservation made (draining)")
    resv = queue.reservation(f"burst-{gc.id}")
    assert resv is not None and resv["Nodes"] == "gpu[01-04]" and "IGNORE_JOBS" in resv["Flags"]
    # the notice: the owner is told about A-D (E ends before the start), the channel gets a summary
    dm = [t for a, t in notes.sent if a == "root"]
    assert dm and all(f"`{sub[k]}`" in dm[0] for k in "ABCD") and f"`{sub['E']}`" not in dm[0], dm
    assert any(a == "all" and "4 job(s)" in t for a, t in notes.sent)

    wait_for(lambda: cluster.job_state(sub["E"]) == "COMPLETED", 20, "E to end by itself")
    time.sleep(2)
    assert cluster.job_state(sub["Q"]) == "PENDING", "the reservation keeps Q off the freed node"

    # ---- the start: record, signal, grace, hold, submit -------------------------------------
    marks_t: dict[str, float] = {}
    released_total = 0
    w_ids: dict[str, str] = {}

    def watch(res: TickResult) -> None:
        nonlocal released_total
        ch = res.challenges
        assert ch is not None and not ch.errors, ch.errors if ch else "no challenge runner"
        released_total += ch.released
        cur = store.get_challenge(gc.id)
        assert cur is not None
        if cur.challenge_job_id:
            st = cluster.job_state(cur.challenge_job_id)
            if st == "RUNNING":
                if "gc running" not in marks_t:
                    marks_t["gc running"] = time.time()
                    info = cluster.show_job(cur.challenge_job_id)
                    assert info["Reservation"] == f"burst-{gc.id}" and info["NodeList"] == "gpu[01-04]", info
                    # work submitted during the challenge, on the preempted jobs' nodes
                    w_ids["W1"] = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu01", "--job-name=W1",
                                                 script=f"#!/bin/sh\necho start $(date +%s.%N) >> {marks}/W1\nsleep 1\n")
                    w_ids["W2"] = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu02", "--job-name=W2",
                                                 script=f"#!/bin/sh\necho start $(date +%s.%N) >> {marks}/W2\nsleep 1\n")
        if released_total and released_total >= len(cur.preempted_jobs):
            marks_t.setdefault("all released", time.time())  # after the tick that made the last release

    tick_until(controller, lambda r: phase() is ChallengeState.PREEMPTING, timeout=start - time.time() + 15,
               what="the start", after=watch, interval=TICK_S)
    tl.mark("start: preempted set recorded, checkpoint signals sent")
    rec = store.get_challenge(gc.id)
    assert rec is not None
    assert {p.job_id for p in rec.preempted_jobs} == preemptible, "exactly the jobs running on the nodes at the start"
    order = [p.job_id for p in sorted(rec.preempted_jobs, key=lambda p: p.order)]
    assert order == [sub["B"], sub["D"], sub["A"], sub["C"]], "queue order: by priority"

    tick_until(controller, lambda r: phase() is ChallengeState.RUNNING, timeout=30, what="the challenge job",
               after=watch, interval=TICK_S)
    tl.mark("held, challenge job submitted into the reservation (running)")
    tick_until(controller, lambda r: phase() in (ChallengeState.DONE, ChallengeState.FAILED, ChallengeState.CANCELLED),
               timeout=90, what="the challenge to end and every job to be back", after=watch, interval=TICK_S)
    tl.mark("challenge done: every preempted job back")
    final = store.get_challenge(gc.id)
    assert final is not None and final.state is ChallengeState.DONE, final
    assert all(p.released and p.restored for p in final.preempted_jobs)
    assert queue.reservation(f"burst-{gc.id}") is None, "the reservation is gone"

    # ---- the challenge job ran on all its nodes, inside its reservation -------------------------
    gc_job = cluster.show_job(final.challenge_job_id)
    assert gc_job["JobState"] == "COMPLETED", gc_job  # (its Reservation= was checked while it ran)
    ran_on = sorted(line.split()[-1] for line in (marks / "gc-nodes").read_text().splitlines())
    assert ran_on == cluster.onprem_nodes

    # ---- every preempted job ran again, from its checkpoint, and finished ---------------------
    for jid in preemptible:
        wait_for(lambda jid=jid: cluster.job_state(jid) == "COMPLETED", 30, f"preempted job {jid} to finish")
        m = job_marks(marks, jid)
        assert len(m["signals"]) == 1, f"{jid} signalled once: {m}"
        saved = int(m["ckpt"][0]["step"])
        starts = [r for r in m["runs"] if r["kind"] == "start"]
        assert [r["restart"] for r in starts] == ["0", "1"], f"{jid} ran twice: {m}"
        assert saved > 0 and int(starts[1]["step"]) == saved, f"{jid} resumed from its checkpoint: {m}"
        assert cluster.show_job(jid)["Restarts"] == "1"

    # ---- preempted jobs ran in their recorded order, before work submitted during the challenge --
    prio = {jid: int(cluster.show_job(jid)["Priority"]) for jid in [*order, *w_ids.values()]}
    assert [prio[j] for j in order] == sorted((prio[j] for j in order), reverse=True)
    assert min(prio[j] for j in order) > max(prio[w] for w in w_ids.values())
    for w, node_jobs in (("W1", [sub["A"]]), ("W2", [sub["B"], sub["C"]])):
        wait_for(lambda w=w: (marks / w).exists(), 30, f"{w} to start")
        w_start = float((marks / w).read_text().split()[1])
        for jid in node_jobs:
            assert started_at(marks, jid, 1) < w_start, f"preempted {jid} ran before {w}"

    # ---- jobs that were not preempted were not touched -----------------------------------------
    e = cluster.show_job(sub["E"])
    assert e["JobState"] == "COMPLETED" and e["Restarts"] == "0" and (marks / "E").read_text().split() == ["start", "done"]
    wait_for(lambda: (marks / "Q").exists(), 30, "Q to run after the challenge")
    assert cluster.show_job(sub["Q"])["Restarts"] == "0"
    acted = [r for r in store.audit_rows(subject=gc.id, kind="challenge", limit=500)
             if r.action in ("checkpoint", "hold", "release")]
    touched = {j for r in acted for j in (r.data or {}).get("jobs", [])}
    assert touched <= preemptible and sub["Q"] not in touched and sub["E"] not in touched

    # ---- figures -----------------------------------------------------------------------------
    # The signal: the tick's time on the checkpoint audit row (the call follows within the tick).
    # The challenge's start and end: its own script's time stamps. All released: wall time after
    # the tick whose last release call returned (an upper bound, up to one tick late).
    tl.report()
    (signal_row,) = [r for r in acted if r.action == "checkpoint"]
    times = dict(line.split() for line in (marks / "gc-times").read_text().splitlines())
    figures = {
        "jobs preempted": len(final.preempted_jobs),
        "jobs restored": sum(p.restored for p in final.preempted_jobs),
        "start signal -> challenge running (s)": round(float(times["start"]) - signal_row.at, 2),
        "challenge end -> all released (s)": round(marks_t["all released"] - float(times["end"]), 2),
    }
    print("[e2e] grand challenge figures:", figures)
    assert figures["jobs preempted"] == figures["jobs restored"] == 4
