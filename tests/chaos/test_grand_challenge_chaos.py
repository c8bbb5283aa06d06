"""Chaos: the controller is SIGKILLed over and over while grand challenges run on REAL Slurm.

The controller is a real process: the wiring (``burst.wiring.build_runtime`` on a Slurm config,
so the real ``SlurmQueue`` is its queue and its ``challenge_queue``) and the daemon's own
``Daemon.run_once`` (lease, tick) every 0.5 s, over a SQLite store that every restart reopens.
Why a small driver instead of ``burst run``: ``burst run`` ticks at most once a second and its
config has no knob for the runner's release retry (60 s by default); the driver sets it to 3 s
so a crash in the middle of a release costs seconds, not a minute (see DRIVER).

The test process plays the users (submits checkpointing jobs, schedules the challenges through
``schedule_challenge`` on the same database) and kills the controller:

* at each of the five crash points of ``burst/faults.py`` (armed through ``BURST_CRASH_POINTS``
  with probability 1 until the point has fired its quota), and
* from outside, with SIGKILL, at random moments of draining, preempting/running and restoring.

Each kill is followed by a restart on the same database. Several challenges run one after the
other until every point has fired and at least MIN_KILLS kills happened. Then, per challenge:
it completes (``done``); no job is lost (every preempted job completes); the preempted set is
exactly the jobs running at the start (pending ones and work submitted during the challenge are
never preempted nor touched); and no job is signalled, held or released twice, counted from the
audit rows and from the jobs' own marker files and ``SLURM_RESTART_COUNT`` (a job held twice
would run three times).

Seed: ``CHAOS_SEED`` (default 11). Kills: ``CHAOS_MIN_KILLS`` (default 20).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from burst.domain import CHALLENGE_TERMINAL, ChallengeState, GrandChallenge
from burst.faults import GRAND_CHALLENGE_POINTS
from burst.grand_challenge import schedule_challenge
from burst.store.sql import SqlStore
from tests.support.slurm_cluster import SlurmCluster, checkpoint_job, job_marks, started_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("CHAOS_SEED", "11"))
MIN_KILLS = int(os.environ.get("CHAOS_MIN_KILLS", "20"))
MAX_CHALLENGES = 6
BUDGET_S = 420.0  # the whole chaos phase: about 50 s on a quiet machine; the margin is for a loaded CI one
# How often each point is forced to fire over the run (mid-release: once per job at most).
QUOTA = {
    "after-preempted-recorded": 1,
    "between-signal-and-hold": 1,
    "after-hold": 2,
    "after-submit": 2,
    "mid-release": 4,
}
C = ChallengeState
BEFORE_START = (C.SCHEDULED, C.NOTIFIED, C.DRAINING)

DRIVER = """
import dataclasses, logging, sys, time
from burst.config import load_config
from burst.daemon import Daemon
from burst.wiring import build_runtime

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
cfg = load_config(sys.argv[1])
rt = build_runtime(cfg)
runner = rt.controller.challenges
assert runner is not None, "the wiring hands SlurmQueue to the controller as its challenge queue"
# Not in the config (yet): how soon a release that never reached Slurm is made again.
runner.settings = dataclasses.replace(runner.settings, release_retry_s=3.0, restore_poll_s=0.5)
daemon = Daemon(rt.controller, rt.clock, rt.store, lease_ttl_s=cfg.lease_ttl_s)
while True:
    res = daemon.run_once()
    ch = res.challenges if res is not None else None
    print("tick", ch.phases if ch else {}, ch.errors if ch else [], file=sys.stderr, flush=True)
    time.sleep(0.5)
"""


def write_config(tmp: Path, cluster: SlurmCluster) -> tuple[Path, str]:
    db_url = f"sqlite:///{tmp / 'burst.db'}"
    cfg = {
        "cluster": "gc-chaos",
        "database_url": db_url,
        "tick_interval_s": 1,
        "lease_ttl_s": 5,
        "queue": {"kind": "slurm", "slurm": {"slurm_conf": str(cluster.conf), "timeout_s": 10}},
        "clouds": {"aws": {"enabled": False}, "azure": {"enabled": False}},
        "policy": {"burst_enabled": False},  # no cloud: this test is about the on-prem queue
        "grand_challenge": {"drain_window_min": 0.1, "checkpoint_grace_min": 0.05},  # 6 s, 3 s
    }
    path = tmp / "burst.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path, db_url


class Controller:
    """The driver as a subprocess; stderr (its log and tick lines) goes to one file per generation."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.generation = 0

    def start(self, crash_points: str) -> None:
        self.generation += 1
        self.log = self.logs / f"controller-{self.generation:03d}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env["BURST_HOLDER_ID"] = "gc-chaos"  # a restart reclaims its own lease at once
        env.pop("SLACK_BOT_TOKEN", None)
        env.pop("BURST_CRASH_POINTS", None)
        if crash_points:
            env["BURST_CRASH_POINTS"] = crash_points
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(self.config)], cwd=REPO, env=env,
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def ticks(self) -> int:
        return self.text().count("\ntick ") + self.text().startswith("tick ")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fired(self) -> str:
        for line in self.text().splitlines():
            if line.startswith("crash point ") and line.endswith(" fired"):
                return line.split()[2]
        return ""

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Round:
    """One challenge and the jobs around it."""

    gc: GrandChallenge
    running: set[str]  # checkpointing jobs running when it was scheduled (the ones to preempt)
    pending: set[str]  # a job pending before the start (never preempted)
    during: set[str] = field(default_factory=set)  # work submitted while it ran


@pytest.fixture(scope="module")
def chaos_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    yield from started_cluster(tmp_path_factory, "gc-chaos-slurm")


def fill(cluster: SlurmCluster, marks: Path) -> tuple[set[str], set[str]]:
    """Checkpointing jobs on every on-prem node (two share gpu02), and one pending job."""
    ckpt = checkpoint_job(marks, extra_steps=5)
    shapes = [("gpu01", 8, 200), ("gpu02", 4, 500), ("gpu02", 4, 100), ("gpu03", 8, 300), ("gpu04", 8, 400)]
    ids = {cluster.sbatch(f"--gres=gpu:{g}", f"--nodelist={n}", f"--priority={p}", script=ckpt)
           for n, g, p in shapes}
    for j in ids:
        cluster.wait_job_state(j, "RUNNING")
    wait_for(lambda: all(job_marks(marks, j)["runs"] for j in ids), 10, "the jobs' first marks")
    pend = cluster.sbatch("--gres=gpu:8", "--nodelist=gpu01", script=f"#!/bin/sh\necho ran >> {marks}/pending-$SLURM_JOB_ID\n")
    return ids, {pend}


def test_grand_challenges_survive_sigkill_at_every_point(chaos_slurm: SlurmCluster, tmp_path: Path) -> None:
    cluster = chaos_slurm
    cluster.reset()
    rng = random.Random(SEED)
    marks = tmp_path / "marks"
    marks.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    config, db_url = write_config(tmp_path, cluster)
    store = SqlStore.from_url(db_url, upgrade=True)
    ctl = Controller(config, logs)

    fired: Counter[str] = Counter()
    kills: list[tuple[str, str]] = []  # (how: a crash point or "random", phase when killed)
    rounds: list[Round] = []
    t0 = time.monotonic()

    def phase(r: Round) -> ChallengeState:
        got = store.get_challenge(r.gc.id)
        assert got is not None
        return got.state

    def crash_env(r: Round) -> str:
        """The first point (in window order) below its quota that this challenge can still reach."""
        ph = phase(r)
        gc = store.get_challenge(r.gc.id)
        assert gc is not None
        reachable = {
            "after-preempted-recorded": ph in BEFORE_START,
            "between-signal-and-hold": ph in BEFORE_START,
            "after-hold": ph in (*BEFORE_START, C.PREEMPTING),
            "after-submit": ph in (*BEFORE_START, C.PREEMPTING),
            "mid-release": ph not in CHALLENGE_TERMINAL and not all(p.released for p in gc.preempted_jobs or ()),
        }
        for p in GRAND_CHALLENGE_POINTS:
            if fired[p] < QUOTA[p] and reachable[p]:
                return f"{p}:1"
        return ""

    def generation(r: Round, random_kill: bool) -> None:
        """Run one controller until it dies at a crash point, is killed at random, or the
        challenge is over."""
        ctl.start(crash_env(r))
        wait_for(lambda: ctl.ticks() > 0 or not ctl.alive(), 30, "the controller's first tick")
        life = rng.uniform(0.2, 2.0) if random_kill else 1e9
        born = time.monotonic()
        while ctl.alive() and phase(r) not in CHALLENGE_TERMINAL:
            if time.monotonic() - born >= life:
                ph = phase(r)
                ctl.kill()
                kills.append(("random", str(ph)))
                return
            time.sleep(0.05)
        if not ctl.alive():
            point = ctl.fired()
            assert point, f"the controller died without a crash point:\n{ctl.text()[-3000:]}"
            fired[point] += 1
            kills.append((point, str(phase(r))))
            return
        ctl.kill()  # the challenge is over; the next round starts a fresh generation (not counted)

    def enough() -> bool:
        """MIN_KILLS kills, every point fired, and kills in each part of the timeline."""
        phases = {ph for _, ph in kills}
        return (len(kills) >= MIN_KILLS and all(fired[p] >= 1 for p in GRAND_CHALLENGE_POINTS)
                and bool(phases & {"notified", "draining"}) and bool(phases & {"preempting", "running"})
                and "restoring" in phases)

    while not enough() and len(rounds) < MAX_CHALLENGES:
        assert time.monotonic() - t0 < BUDGET_S, f"out of time: kills {Counter(k for k, _ in kills)}"
        running, pending = fill(cluster, marks)
        now = time.time()
        gc = schedule_challenge(
            store, now=now, actor="admin", name=f"chaos-{len(rounds) + 1}", start_at=now + 9.0, duration_s=60.0,
            onprem_nodes=len(cluster.onprem_nodes),
            job_text=f"#!/bin/sh\n#SBATCH --output={marks}/gc-%j.out\necho $SLURM_JOB_ID >> {marks}/gc-runs\nsleep 6\n",
        )
        r = Round(gc, running, pending)
        rounds.append(r)
        while phase(r) not in CHALLENGE_TERMINAL:
            assert time.monotonic() - t0 < BUDGET_S + 60, f"out of time in {phase(r)}: kills {kills}"
            if phase(r) is C.RUNNING and not r.during:
                r.during.add(cluster.sbatch("--gres=gpu:8", "--nodelist=gpu03",
                                            script=f"#!/bin/sh\necho ran >> {marks}/during-$SLURM_JOB_ID\n"))
            generation(r, random_kill=len(kills) < MIN_KILLS + 4 and rng.random() < 0.85)
        # the jobs come back and finish before the next round fills the nodes again
        for j in r.running | r.pending | r.during:
            wait_for(lambda j=j: cluster.job_state(j) == "COMPLETED", 60, f"job {j} to complete")

    ctl.kill()
    elapsed = time.monotonic() - t0
    by_point = Counter(k for k, _ in kills)
    by_phase = Counter(ph for _, ph in kills)
    print(f"\n[gc-chaos] {len(rounds)} challenges, {len(kills)} kills in {elapsed:.0f}s "
          f"over {ctl.generation} controller generations")
    print(f"[gc-chaos] kills per point: {dict(sorted(by_point.items()))}")
    print(f"[gc-chaos] kills per phase: {dict(sorted(by_phase.items()))}")
    assert enough(), f"kills {dict(by_point)}"

    # ---- per challenge: completed, nothing lost, nothing twice --------------------------------
    gc_runs = (marks / "gc-runs").read_text().split()
    for r in rounds:
        gc = store.get_challenge(r.gc.id)
        assert gc is not None and gc.state is C.DONE, gc
        assert gc_runs.count(gc.challenge_job_id) == 1, "the challenge job ran once"
        assert {p.job_id for p in gc.preempted_jobs} == r.running, "exactly the jobs running at the start"
        assert all(p.released and p.restored for p in gc.preempted_jobs)
        rows = store.audit_rows(subject=gc.id, kind="challenge", limit=2000)
        per: dict[str, Counter[str]] = {}
        for row in rows:
            for j in (row.data or {}).get("jobs", []):
                action = row.action
                if action == "release" and "did not take" in row.reason:
                    action = "release-retry"  # the same job again after a crash before its call
                per.setdefault(j, Counter())[action] += 1
        for j in r.pending | r.during:
            assert j not in per, f"job {j} was not running at the start and was touched: {per.get(j)}"
            assert cluster.show_job(j)["Restarts"] == "0"
        for j in r.running:
            m = job_marks(marks, j)
            starts = [x["restart"] for x in m["runs"] if x["kind"] == "start"]
            assert starts == ["0", "1"], f"job {j} ran exactly twice (held once, released once): {m}"
            assert any(x["kind"] == "done" for x in m["runs"]), f"job {j} was lost: {m}"
            assert cluster.show_job(j)["Restarts"] == "1"
            assert len(m["signals"]) <= 1 and per[j]["checkpoint"] <= 1, f"job {j} signalled twice: {m} {per[j]}"
            assert per[j]["hold"] == 1, f"job {j} held {per[j]['hold']} times"
            assert per[j]["release"] == 1, f"job {j} released {per[j]['release']} times"
            if m["signals"]:
                resumed = next(x for x in m["runs"] if x["kind"] == "start" and x["restart"] == "1")
                assert resumed["step"] == m["ckpt"][0]["step"], f"job {j} resumed from its checkpoint: {m}"
        print(f"[gc-chaos] {gc.id}: {len(gc.preempted_jobs)} preempted, all restored; "
              f"release retries {sum(c['release-retry'] for c in per.values())}, "
              f"signalled {sum(bool(job_marks(marks, j)['signals']) for j in r.running)}/{len(r.running)}")
    assert store.challenges(states=sorted(set(C) - CHALLENGE_TERMINAL)) == []
    assert not [x for x in cluster.run("scontrol", "show", "reservation", "-o").stdout.splitlines() if "burst-" in x]
