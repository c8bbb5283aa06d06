"""Grand challenges in the daemon's outputs: the Prometheus phase gauge and the preempted /
restored counters (from ``TickResult.challenges``, scraped over real HTTP), and the bounded
running-job record the Slack bot reads the impact from."""

from __future__ import annotations

import socket
import urllib.request

from burst.challenges import MAX_RECORDED_JOBS, queue_from_status, record_queue
from burst.controller import Controller
from burst.daemon import Daemon
from burst.domain import GrandChallenge, Job, JobState, Node, QueueSnapshot
from burst.metrics import REGISTRY, serve
from burst.sim.cluster import SimCluster
from burst.sim.trace import TraceJob
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from policies.grand_challenge import ChallengeSettings

H = 3600.0
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phase(cid: str, phase: str) -> float | None:
    return REGISTRY.get_sample_value("burst_grand_challenge_phase", {"challenge": cid, "phase": phase})


def test_phase_gauge_and_job_counters_follow_a_challenge() -> None:
    clock, store = Clock(), MemoryStore()
    cluster = SimCluster(2, 8, "A100")
    for k in range(3):
        cluster.submit(TraceJob(f"j{k}", T0, 100 * H, 4, owner=f"u{k}"), T0)
    controller = Controller(cluster="t", queue=cluster, providers={}, store=store, offers=[], policy=PolicyConfig(),
                            challenge_queue=cluster, challenge_settings=ChallengeSettings(checkpoint_grace_s=120))
    daemon = Daemon(controller, clock, store, holder="m", metrics=True)
    store.add_challenge(GrandChallenge(id="gc-0000aa", name="m", start_at=T0 + 2 * H, duration_s=H, command="",
                                       created_by="admin", job_text="#!/bin/sh\n"), now=T0, actor="admin")
    preempted0 = REGISTRY.get_sample_value("burst_grand_challenge_jobs_preempted_total") or 0.0
    restored0 = REGISTRY.get_sample_value("burst_grand_challenge_jobs_restored_total") or 0.0

    def step(t: float) -> str:
        clock.t = t
        cluster.complete_until(t)
        cluster.schedule(t)
        daemon.run_once()
        cluster.schedule(t)
        gc = store.get_challenge("gc-0000aa")
        assert gc is not None
        return str(gc.state)

    step(T0)
    assert _phase("gc-0000aa", "notified") == 1.0 and _phase("gc-0000aa", "scheduled") == 0.0
    assert _phase("gc-0000aa", "running") == 0.0  # every phase is exported
    t = T0
    while step(t) != "running":
        t += 60.0
        assert t < T0 + 3 * H
    assert _phase("gc-0000aa", "running") == 1.0 and _phase("gc-0000aa", "notified") == 0.0
    assert (REGISTRY.get_sample_value("burst_grand_challenge_jobs_preempted_total") or 0.0) == preempted0 + 3
    while step(t) != "done":
        t += 60.0
        assert t < T0 + 5 * H
    assert _phase("gc-0000aa", "done") == 1.0 and _phase("gc-0000aa", "restoring") == 0.0
    assert (REGISTRY.get_sample_value("burst_grand_challenge_jobs_restored_total") or 0.0) == restored0 + 3
    port = _free_port()
    serve(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'burst_grand_challenge_phase{challenge="gc-0000aa",phase="done"} 1.0' in body
    assert "burst_grand_challenge_jobs_preempted_total" in body
    # one tick after its final phase, the finished challenge's series are gone
    step(t + 60.0)
    assert _phase("gc-0000aa", "done") is None


def test_the_tick_record_holds_running_jobs_bounded_and_reads_back() -> None:
    running = tuple(
        Job(id=f"j{k}", gpus=1 + k % 8, submit_time=0.0, state=JobState.RUNNING, owner=f"u{k % 7}",
            start_time=float(k), time_limit_s=3600.0 if k % 2 else None, node_names=(f"n{k % 50}",),
            priority=k % 3, may_burst=bool(k % 2))
        for k in range(MAX_RECORDED_JOBS + 500)
    )
    nodes = tuple(Node(name=f"n{k}", gpus=8) for k in range(50)) + (Node(name="burst-1", gpus=8, instance_id="i-1"),)
    rec = record_queue(QueueSnapshot((), running, nodes))
    assert len(rec["running"]) == MAX_RECORDED_JOBS and rec["jobs_dropped"] == 500  # type: ignore[arg-type]
    assert rec["onprem_node_count"] == 50 and "burst-1" not in rec["onprem_nodes"]  # type: ignore[operator]
    # the biggest jobs are kept: what is at risk most
    assert min(j["gpus"] for j in rec["running"]) >= 1  # type: ignore[attr-defined, union-attr]
    q = queue_from_status({"at": 5.0, "queue": rec})
    assert q is not None and q.onprem_count == 50 and len(q.running) == MAX_RECORDED_JOBS
    j7 = next(j for j in q.running if j.id == "j7")
    assert j7.owner == "u0" and j7.gpus == 8 and j7.start_time == 7.0 and j7.time_limit_s == 3600.0
    assert j7.node_names == ("n7",) and j7.priority == 1 and j7.may_burst
    assert queue_from_status({"at": 5.0}) is None


def test_the_daemon_records_the_queue_each_tick() -> None:
    clock, store = Clock(), MemoryStore()
    cluster = SimCluster(2, 8, "A100")
    cluster.submit(TraceJob("a", T0, 10 * H, 8, owner="ada"), T0, time_limit=12 * H)
    cluster.schedule(T0)
    controller = Controller(cluster="t", queue=cluster, providers={}, store=store, offers=[], policy=PolicyConfig())
    Daemon(controller, clock, store, holder="r").run_once()
    q = queue_from_status(store.controller_status() or {})
    assert q is not None and q.onprem_count == 2
    (a,) = q.running
    assert a.id == "a" and a.owner == "ada" and a.time_limit_s == 12 * H and a.start_time == T0 and a.node_names
