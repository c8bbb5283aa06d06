"""One contract suite for every :class:`burst.ports.QueueSource` implementation, and for the
optional queue capabilities (:class:`burst.ports.PreemptionControl`, gang holds) where an
implementation has them.

Backends, each loaded with the same scenario (two nodes of 8 GPUs; node A runs a 4-GPU job, node
B is idle; a 2 x 8-GPU gang is pending because node A is not free):

* ``slurm``: :class:`SlurmQueue` on a real Slurm 22.05 (tests/support/slurm_cluster.py) with one
  on-prem node (``gpu01``, node A) and one pool node joined by starting its slurmd (``burst01``,
  node B); the jobs are submitted with ``sbatch``.
* ``kubernetes``: :class:`KubernetesQueue`, the real ``kubernetes`` client over HTTP to the
  stand-in API server (tests/support/fake_kube_api.py); the jobs are batch/v1 Jobs and their pods.
* ``jsonfile``: :class:`JsonFileQueue` over a JSON document written by the test (as an exporter
  would).
* ``sim``: :class:`SimCluster`, the simulator's in-memory scheduler; the jobs are submitted and
  scheduled on it.

Capabilities are parametrized separately (``CAPABILITIES``): a test of a capability is collected
only for the backends that have it, and :func:`test_capabilities_are_declared` keeps that table
honest against the Protocols the implementations satisfy.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import pytest

from burst import ports

# The implementations are imported here and nowhere else in this file (fix these lines when
# modules move): burst.queues.{jsonfile,kubernetes,slurm}, burst.sim.{cluster,trace}.
from burst.domain import GANG_HOLD_LABEL, ChallengeJobKind, GrandChallenge, Job, JobState, Node, QueueSnapshot
from burst.errors import InputError, QueueError, QueueParseError, QueueUnavailable
from burst.ports import ChallengeQueue, PreemptionControl, QueueSource
from burst.queues.jsonfile import JsonFileQueue
from burst.queues.kubernetes.adapter import RESERVATION_ANNOTATION, KubernetesQueue
from burst.queues.kubernetes.settings import K8sSettings
from burst.queues.slurm.adapter import SlurmQueue
from burst.queues.slurm.parse import node_name_for
from burst.queues.slurm.settings import SlurmSettings
from burst.sim.cluster import SimCluster
from burst.sim.trace import TraceJob
from tests.support.fake_kube_api import FakeKube
from tests.support.slurm_cluster import SlurmCluster, free_ports, started_cluster, wait_for

T = TypeVar("T")
T0 = 1_800_000_000.0
K8S_CHALLENGE_JOB = """apiVersion: batch/v1
kind: Job
metadata:
  name: ignored
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: challenge
          image: harbor.example.com/ml/challenge:1
          resources:
            limits:
              nvidia.com/gpu: 8
"""


# The ports' capability Protocols are not runtime-checkable (the core never probes an adapter);
# the suite checks the declared capability table against them, so it makes checkable views.
@runtime_checkable
class GangHold(ports.GangHold, Protocol):
    """``burst.ports.GangHold``, checkable here."""


@runtime_checkable
class Closable(ports.Closeable, Protocol):
    """``burst.ports.Closeable``, checkable here."""


@dataclass
class QueueBackend:
    """A queue loaded with the scenario, and what the suite needs to know about it."""

    name: str
    queue: QueueSource
    busy_node: str  # node A: runs the running job (4 of 8 GPUs)
    idle_node: str  # node B: nothing on it
    running_id: str
    pending_id: str
    # How long a change may take to show in a snapshot (0: the next snapshot shows it).
    settle_s: float = 0.0
    # ---- capability hooks (None where the backend does not have the capability)
    unknown_job_id: str = ""  # a well-formed id of a job the scheduler does not have
    checkpointed: Callable[[str], bool] | None = None  # did the job see the checkpoint request?
    add_gang_held_node: Callable[[str, str], None] | None = None  # (node, gang id)
    dead_queue: Callable[[], QueueSource] | None = None  # the same queue, its scheduler not answering
    garbled_queue: Callable[[], QueueSource] | None = None  # one whose scheduler answers unreadably
    closers: list[Callable[[], None]] = field(default_factory=list)
    # ChallengeQueue: a challenge job this scheduler runs (kind, text), and which nodes a
    # reservation of that name holds as the scheduler itself reports it.
    challenge_job: tuple[ChallengeJobKind, str] | None = None
    reserved_nodes: Callable[[str], set[str]] | None = None
    burst_node: str = ""  # a joined burst node, where the scenario has one


# Which capability each backend has. A capability test is parametrized over these only.
CAPABILITIES: dict[str, frozenset[str]] = {
    "slurm": frozenset({"preemption", "challenge", "priority", "burst_node", "unavailable", "parse_error"}),
    "kubernetes": frozenset({"preemption", "challenge", "gang_hold", "close", "unavailable", "parse_error"}),
    "jsonfile": frozenset({"unavailable", "parse_error"}),
    # The simulated scheduler is in memory: it always answers, and what it answers is its own.
    # It checkpoints, holds and releases for grand challenges in the simulator.
    "sim": frozenset({"preemption", "challenge", "priority"}),
}


def with_capability(cap: str) -> list[str]:
    return [name for name, caps in CAPABILITIES.items() if cap in caps]


# ---- slurm ----------------------------------------------------------------------------------

# Checkpoint on USR1 (a marker file) and keep running; exit on TERM (RECIPES.md: a job that exits
# 0 on USR1 ends COMPLETED and is never requeued).
CKPT_SCRIPT = """#!/bin/bash
trap 'echo ckpt >> {mark}' USR1
trap 'exit 143' TERM
while true; do sleep 0.2; done
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    yield from started_cluster(tmp_path_factory, "contract-slurm", onprem=1, burst=1)


def _slurm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
    cluster.reset()
    # node B is a burst node the way production makes one: a dynamic node named after its
    # instance (burst/queues/slurm/adapter.py), registered by `slurmd -Z`.
    node_a, node_b = cluster.onprem_nodes[0], node_name_for("b-c0ffee00c0ffee00")
    cluster.start_dynamic_node(node_b, "cloud,aws")
    mark = tmp_path / "ckpt"
    running = cluster.sbatch(f"--nodelist={node_a}", "-N", "1", "--gres=gpu:4", "-c", "1", "--requeue",
                             script=CKPT_SCRIPT.format(mark=mark))
    cluster.wait_job_state(running, "RUNNING")
    pending = cluster.sbatch("-N", "2", "--gres=gpu:8", "-c", "1")
    wait_for(lambda: cluster.show_job(pending).get("Reason") in ("Resources", "Priority"), 20,
             "the gang to pend for resources")
    settings = SlurmSettings(slurm_conf=cluster.conf, timeout_s=10)

    def dead() -> QueueSource:
        # the same cluster's configuration, pointing at a port where no slurmctld listens
        (port,) = free_ports(1)
        conf = tmp_path / "dead" / "slurm.conf"
        conf.parent.mkdir()
        conf.write_text(re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={port}", cluster.conf.read_text()))
        (conf.parent / "gres.conf").write_text((cluster.conf.parent / "gres.conf").read_text())
        return SlurmQueue(settings.model_copy(update={"slurm_conf": conf, "timeout_s": 3.0}))

    def reserved(name: str) -> set[str]:
        # Slurm's own word, read with its CLI (not through the adapter under test)
        out = cluster.run("scontrol", "show", "reservation", "-o", name, check=False).stdout
        m = re.search(r"\bNodes=(\S+)", out) if f"ReservationName={name} " in out else None
        if m is None or m.group(1) == "(null)":
            return set()
        return set(cluster.run("scontrol", "show", "hostnames", m.group(1)).stdout.split())

    def garbled() -> QueueSource:
        # Slurm's own answer, cut short (a client killed mid-write, a full pipe): the real sinfo
        # and squeue run, and their JSON is truncated on the way to burst.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for prog in ("sinfo", "squeue", "scontrol"):
            real = _which(prog)
            script = bin_dir / prog
            script.write_text(f"#!/bin/sh\n{real} \"$@\" | head -c 200\n")
            script.chmod(0o755)
        return SlurmQueue(settings.model_copy(update={"bin_dir": bin_dir}))

    yield QueueBackend(
        "slurm", SlurmQueue(settings), node_a, node_b, running, pending, settle_s=20.0,
        unknown_job_id="4000000",
        checkpointed=lambda jid: mark.exists() and "ckpt" in mark.read_text(),
        dead_queue=dead, garbled_queue=garbled,
        challenge_job=(ChallengeJobKind.SLURM, "#!/bin/sh\nsleep 60\n"), reserved_nodes=reserved, burst_node=node_b,
    )
    cluster.reset()


def _which(prog: str) -> str:
    found = shutil.which(prog)
    assert found, f"{prog} not on PATH"
    return found


# ---- kubernetes -----------------------------------------------------------------------------

GANG_TAINT = "burst.dev/gang"


def _kubernetes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    kube = FakeKube().start()
    made: list[KubernetesQueue] = []

    def make(**update: object) -> KubernetesQueue:
        q = KubernetesQueue(K8sSettings.model_validate({"host": kube.url, "timeout_s": 5, **update}))
        made.append(q)
        return q

    kube.add_node("node-a", 8)
    kube.add_node("node-b", 8)
    kube.add_job("train", "ml", parallelism=1, gpus_per_pod=4, pods="running:node-a")
    kube.add_job("gang", "ml", parallelism=2, gpus_per_pod=8, pods="pending")

    def checkpointed(jid: str) -> bool:
        _, _, name = jid.split("/")
        pods = kube.pods_of_job("ml", name)
        return bool(pods) and all("burst.dev/checkpoint-requested-at" in p["metadata"]["annotations"] for p in pods)

    def gang_held(node: str, gang: str) -> None:
        kube.add_node(node, 8, labels={"burst.dev/instance-id": f"i-{node}"},
                      taints=[{"key": GANG_TAINT, "value": gang, "effect": "NoSchedule"}])

    def dead() -> QueueSource:
        (port,) = free_ports(1)
        return make(host=f"http://127.0.0.1:{port}", timeout_s=2)

    def garbled() -> QueueSource:
        pod = kube.add_pod("odd", "ml", gpus=1)
        pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "lots"
        return make()

    try:
        yield QueueBackend(
            "kubernetes", make(), "node-a", "node-b", "ml/job/train", "ml/job/gang", settle_s=5.0,
            unknown_job_id="ml/job/no-such-job", checkpointed=checkpointed, add_gang_held_node=gang_held,
            dead_queue=dead, garbled_queue=garbled, challenge_job=(ChallengeJobKind.KUBERNETES, K8S_CHALLENGE_JOB),
            reserved_nodes=lambda name: {
                n for n, node in kube.nodes.items()
                if node["spec"].get("unschedulable") and node["metadata"].get("annotations", {}).get(
                    RESERVATION_ANNOTATION) == name
            },
        )
    finally:
        for q in made:
            q.close()
        kube.stop()


# ---- json file ------------------------------------------------------------------------------


def _jsonfile(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    path = tmp_path / "queue.json"
    path.write_text(json.dumps({
        "pending": [{"id": "p1", "gpus": 16, "gpus_per_node": 8, "nodes": 2, "submit_time": T0}],
        "running": [{"id": "r1", "gpus": 4, "submit_time": T0 - 100, "start_time": T0 - 50,
                     "node_names": ["node-a"]}],
        "nodes": [{"name": "node-a", "gpus": 8, "gpus_used": 4, "running_jobs": 1},
                  {"name": "node-b", "gpus": 8, "gpus_used": 0}],
    }))

    def garbled() -> QueueSource:
        bad = tmp_path / "garbled.json"
        bad.write_text(path.read_text()[:-7])  # cut short
        return JsonFileQueue(bad)

    yield QueueBackend(
        "jsonfile", JsonFileQueue(path), "node-a", "node-b", "r1", "p1",
        dead_queue=lambda: JsonFileQueue(tmp_path / "exporter-never-wrote-this.json"), garbled_queue=garbled,
    )


# ---- simulated cluster ----------------------------------------------------------------------


def _sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    cluster = SimCluster(2, 8, "A100")
    cluster.submit(TraceJob("r1", T0, 3600.0, 4, nodes=1, per_node=4), T0)
    assert cluster.schedule(T0) == 1
    cluster.submit(TraceJob("p1", T0 + 1, 3600.0, 16, nodes=2, per_node=8), T0 + 1)
    assert cluster.schedule(T0 + 1) == 0
    def checkpointed(jid: str) -> bool:
        sj = cluster.job(jid)
        return sj is not None and sj.signals > 0

    def reserved(name: str) -> set[str]:
        res = cluster.reservations.get(name)
        return {cluster.nodes[i].name for i in res.nodes} if res is not None else set()

    yield QueueBackend("sim", cluster, "onprem-0001", "onprem-0002", "r1", "p1", checkpointed=checkpointed,
                       unknown_job_id="no-such-job", challenge_job=(ChallengeJobKind.SLURM, "#!/bin/sh\nsleep 60\n"),
                       reserved_nodes=reserved)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[QueueBackend]]] = {
    "slurm": _slurm,
    "kubernetes": _kubernetes,
    "jsonfile": _jsonfile,
    "sim": _sim,
}
assert set(FACTORIES) == set(CAPABILITIES)


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from FACTORIES[request.param](request, tmp_path)


@pytest.fixture(params=list(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=with_capability("preemption"))
def preemptible(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=with_capability("challenge"))
def challenging(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=with_capability("priority"))
def prioritising(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=with_capability("gang_hold"))
def gang_holding(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=with_capability("close"))
def closable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=with_capability("unavailable"))
def can_go_away(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=with_capability("parse_error"))
def can_garble(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


# ---- helpers --------------------------------------------------------------------------------


def eventually(b: QueueBackend, check: Callable[[QueueSnapshot], T]) -> T:
    """``check(snapshot)`` until it passes (AssertionError: not yet) within the backend's
    ``settle_s``; a backend with ``settle_s == 0`` gets exactly one snapshot."""
    deadline = time.monotonic() + b.settle_s
    while True:
        snap = b.queue.snapshot()
        try:
            return check(snap)
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.1)


def nodes_of(snap: QueueSnapshot) -> dict[str, Node]:
    return {n.name: n for n in snap.nodes}


def job(jobs: tuple[Job, ...], jid: str) -> Job | None:
    return next((j for j in jobs if j.id == jid), None)


# ---- QueueSource: every backend -------------------------------------------------------------


def test_capabilities_are_declared(backend: QueueBackend) -> None:
    q = backend.queue
    assert isinstance(q, QueueSource)
    assert isinstance(q.name, str) and q.name
    caps = CAPABILITIES[backend.name]
    assert isinstance(q, PreemptionControl) == ("preemption" in caps)
    assert isinstance(q, GangHold) == ("gang_hold" in caps)
    assert isinstance(q, ChallengeQueue) == ("challenge" in caps) == (backend.challenge_job is not None)
    assert isinstance(q, Closable) == ("close" in caps)
    assert (backend.dead_queue is not None) == ("unavailable" in caps)
    assert (backend.garbled_queue is not None) == ("parse_error" in caps)
    assert bool(backend.burst_node) == ("burst_node" in caps)


def test_snapshot_reports_pending_and_running_jobs_with_their_gpus(backend: QueueBackend) -> None:
    snap = backend.queue.snapshot()
    assert [j.id for j in snap.running] == [backend.running_id]
    (run,) = snap.running
    assert run.state is JobState.RUNNING
    assert (run.gpus, run.nodes, run.per_node) == (4, 1, 4)
    assert run.node_names == (backend.busy_node,)
    assert run.start_time is not None and run.start_time >= run.submit_time

    assert [j.id for j in snap.pending] == [backend.pending_id]
    (pend,) = snap.pending
    assert pend.state is JobState.PENDING
    assert (pend.gpus, pend.nodes, pend.per_node) == (16, 2, 8)
    assert pend.start_time is None and pend.node_names == ()


def test_node_gpu_use_comes_from_allocations(backend: QueueBackend) -> None:
    nodes = nodes_of(backend.queue.snapshot())
    a, b = nodes[backend.busy_node], nodes[backend.idle_node]
    assert (a.gpus, a.gpus_used, a.gpus_free, a.running_jobs) == (8, 4, 4, 1)
    assert a.schedulable and a.ready and not a.idle
    assert (b.gpus, b.gpus_used, b.gpus_free, b.running_jobs) == (8, 0, 8, 0)
    assert b.schedulable and b.ready and b.idle


def test_drain_is_idempotent_and_shows_in_the_next_snapshot(backend: QueueBackend) -> None:
    q = backend.queue
    q.drain_node(backend.idle_node, "burst: contract drain")
    q.drain_node(backend.idle_node, "burst: contract drain")  # again: no further effect

    def drained(snap: QueueSnapshot) -> None:
        nodes = nodes_of(snap)
        b = nodes[backend.idle_node]
        assert not b.schedulable and b.gpus_free == 0
        assert (b.gpus, b.gpus_used) == (8, 0)  # drained, not gone: capacity is still reported
        assert nodes[backend.busy_node].schedulable  # only the named node
        assert [j.id for j in snap.running] == [backend.running_id]

    eventually(backend, drained)


def test_undrain_reverses_a_drain(backend: QueueBackend) -> None:
    q = backend.queue
    q.drain_node(backend.idle_node, "burst: contract drain")
    eventually(backend, lambda s: _assert(not nodes_of(s)[backend.idle_node].schedulable))
    q.undrain_node(backend.idle_node, "burst: work arrived")
    q.undrain_node(backend.idle_node, "burst: work arrived")  # again: no further effect

    def back(snap: QueueSnapshot) -> None:
        b = nodes_of(snap)[backend.idle_node]
        assert b.schedulable and b.gpus_free == 8

    eventually(backend, back)


def test_remove_node_of_an_unknown_node_is_success(backend: QueueBackend) -> None:
    before = sorted(nodes_of(backend.queue.snapshot()))
    backend.queue.remove_node("no-such-node-42")
    backend.queue.remove_node("no-such-node-42")
    assert sorted(nodes_of(backend.queue.snapshot())) == before


def test_remove_node_takes_an_idle_node_out_and_repeats_as_success(backend: QueueBackend) -> None:
    backend.queue.remove_node(backend.idle_node)
    eventually(backend, lambda s: _assert(sorted(nodes_of(s)) == [backend.busy_node]))
    backend.queue.remove_node(backend.idle_node)  # the scheduler no longer has it: success
    snap = backend.queue.snapshot()
    assert sorted(nodes_of(snap)) == [backend.busy_node]
    assert [j.id for j in snap.running] == [backend.running_id]


# ---- PreemptionControl ----------------------------------------------------------------------


def test_checkpoint_signals_and_does_not_stop_the_job(preemptible: QueueBackend) -> None:
    b = preemptible
    q = b.queue
    assert isinstance(q, PreemptionControl) and b.checkpointed is not None
    checkpointed = b.checkpointed
    q.checkpoint([b.running_id])
    q.checkpoint([b.unknown_job_id])  # nothing to checkpoint: success
    wait_for(lambda: checkpointed(b.running_id), max(b.settle_s, 1.0), "the job to see the checkpoint request")
    time.sleep(0.5)  # a job the checkpoint killed would be gone by now
    snap = q.snapshot()
    assert [j.id for j in snap.running] == [b.running_id]
    assert nodes_of(snap)[b.busy_node].gpus_used == 4


def test_hold_keeps_jobs_queued_and_unschedulable_and_release_undoes_it(preemptible: QueueBackend) -> None:
    b = preemptible
    q = b.queue
    assert isinstance(q, PreemptionControl)
    both = [b.pending_id, b.running_id]
    q.hold(both)
    q.hold(both)  # already held: success
    q.hold([b.unknown_job_id])  # unknown: success

    def held(snap: QueueSnapshot) -> None:
        assert snap.running == ()
        for jid in both:
            j = job(snap.pending, jid)
            assert j is not None, f"{jid} left the queue"
            assert j.state is JobState.HELD
        assert nodes_of(snap)[b.busy_node].gpus_used == 0  # the held job's GPUs are free

    eventually(b, held)
    still = job(q.snapshot().pending, b.running_id)
    assert still is not None and still.gpus == 4  # held as what it was

    q.release(both)
    q.release(both)  # not held any more: success
    q.release([b.unknown_job_id])  # unknown: success

    def released(snap: QueueSnapshot) -> None:
        for jid in both:
            j = job(snap.pending, jid) or job(snap.running, jid)
            assert j is not None, f"{jid} left the queue"
            assert j.state in (JobState.PENDING, JobState.RUNNING)

    eventually(b, released)


def test_release_of_a_job_that_is_not_held_is_success(preemptible: QueueBackend) -> None:
    b = preemptible
    q = b.queue
    assert isinstance(q, PreemptionControl)
    q.release([b.pending_id, b.running_id])
    snap = q.snapshot()
    assert [j.id for j in snap.running] == [b.running_id]
    pend = job(snap.pending, b.pending_id)
    assert pend is not None and pend.state is JobState.PENDING


# ---- grand challenges (ChallengeQueue) ------------------------------------------------------


def _challenge(b: QueueBackend, cid: str = "gc-contract") -> GrandChallenge:
    assert b.challenge_job is not None
    kind, text = b.challenge_job
    return GrandChallenge(id=cid, name="contract", start_at=T0, duration_s=600.0, command="", created_by="admin",
                          job_kind=kind, job_text=text)


def test_a_reservation_holds_exactly_its_nodes_and_both_calls_are_idempotent(challenging: QueueBackend) -> None:
    b = challenging
    q = b.queue
    assert isinstance(q, ChallengeQueue) and b.reserved_nodes is not None
    # an on-prem node running a job: a challenge reserves busy nodes and clears them itself
    q.create_reservation("burst-gc-contract", None, 600.0, nodes=[b.busy_node])
    q.create_reservation("burst-gc-contract", None, 600.0, nodes=[b.busy_node])  # again: success
    assert b.reserved_nodes("burst-gc-contract") == {b.busy_node}
    assert b.reserved_nodes("burst-gc-other") == set()
    q.delete_reservation("burst-gc-contract")
    q.delete_reservation("burst-gc-contract")  # gone: success
    q.delete_reservation("burst-gc-never-made")
    assert b.reserved_nodes("burst-gc-contract") == set()


def test_a_reservation_naming_an_unknown_node_is_refused_and_changes_nothing(challenging: QueueBackend) -> None:
    b = challenging
    q = b.queue
    assert isinstance(q, ChallengeQueue) and b.reserved_nodes is not None
    with pytest.raises(QueueError):
        q.create_reservation("burst-gc-bad", None, 600.0, nodes=[b.busy_node, "no-such-node-9"])
    assert b.reserved_nodes("burst-gc-bad") == set()


@pytest.fixture(params=[n for n in with_capability("challenge") if "burst_node" in CAPABILITIES[n]])
def with_burst_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    yield from _backend(request, tmp_path)


def test_a_reservation_never_takes_a_burst_node(with_burst_node: QueueBackend) -> None:
    b = with_burst_node
    q = b.queue
    assert isinstance(q, ChallengeQueue) and b.reserved_nodes is not None and b.burst_node
    with pytest.raises(QueueError):
        q.create_reservation("burst-gc-cloud", None, 600.0, nodes=[b.busy_node, b.burst_node])
    assert b.reserved_nodes("burst-gc-cloud") == set()


def test_the_challenge_job_is_submitted_once_per_name_and_cancel_is_idempotent(challenging: QueueBackend) -> None:
    b = challenging
    q = b.queue
    assert isinstance(q, ChallengeQueue)
    q.create_reservation("burst-gc-contract", None, 600.0, nodes=[b.busy_node])
    gc = _challenge(b)
    first = q.submit_challenge(gc, name="burst-gc-contract", reservation="burst-gc-contract", nodes=[b.busy_node])
    again = q.submit_challenge(gc, name="burst-gc-contract", reservation="burst-gc-contract", nodes=[b.busy_node])
    assert first and again == first

    def listed(snap: QueueSnapshot) -> None:
        assert job(snap.pending + snap.running, first) is not None, f"{first} not in the queue"

    eventually(b, listed)
    q.cancel([first])
    q.cancel([first])  # gone: success
    q.cancel([b.unknown_job_id])

    def gone(snap: QueueSnapshot) -> None:
        assert job(snap.pending + snap.running, first) is None, f"{first} still in the queue"

    eventually(b, gone)
    q.delete_reservation("burst-gc-contract")


def test_a_released_job_gets_the_priority_it_is_given(prioritising: QueueBackend) -> None:
    b = prioritising
    q = b.queue
    assert isinstance(q, ChallengeQueue)
    q.hold([b.pending_id])
    q.release([b.pending_id])
    q.set_priority(b.pending_id, 4242)  # after the release, as the runner does
    q.set_priority(b.unknown_job_id, 1)  # unknown: success

    def given(snap: QueueSnapshot) -> None:
        j = job(snap.pending + snap.running, b.pending_id)
        assert j is not None and j.priority == 4242, j

    eventually(b, given)


# ---- gang holds -----------------------------------------------------------------------------


def test_gang_hold_is_shown_and_released_idempotently(gang_holding: QueueBackend) -> None:
    b = gang_holding
    q = b.queue
    assert isinstance(q, GangHold) and b.add_gang_held_node is not None
    b.add_gang_held_node("node-c", "g-1")
    shown = eventually(b, lambda s: nodes_of(s)["node-c"])
    assert shown.labels.get(GANG_HOLD_LABEL) == "g-1"
    assert GANG_HOLD_LABEL not in nodes_of(q.snapshot())[b.idle_node].labels

    q.release_gang_hold("node-c")
    eventually(b, lambda s: _assert(GANG_HOLD_LABEL not in nodes_of(s)["node-c"].labels))
    q.release_gang_hold("node-c")  # nothing left to release: success
    q.release_gang_hold(b.idle_node)  # never held: success
    q.release_gang_hold("no-such-node-42")  # unknown: success
    assert "node-c" in nodes_of(q.snapshot())


# ---- close ----------------------------------------------------------------------------------


def test_close_releases_what_the_queue_holds_is_idempotent_and_a_later_snapshot_works(
    closable: QueueBackend,
) -> None:
    q = closable.queue
    assert isinstance(q, Closable)
    before = set(threading.enumerate())
    q.snapshot()
    started = set(threading.enumerate()) - before
    q.close()
    q.close()  # again: nothing left to release
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [t.name for t in started if t.is_alive()], "close() left threads running"
    assert [j.id for j in q.snapshot().running] == [closable.running_id]  # usable again
    q.close()


# ---- documented errors ----------------------------------------------------------------------


def test_a_scheduler_that_does_not_answer_is_queue_unavailable(can_go_away: QueueBackend) -> None:
    assert can_go_away.dead_queue is not None
    dead = can_go_away.dead_queue()
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailable):
        dead.snapshot()
    with pytest.raises(QueueUnavailable):
        dead.drain_node(can_go_away.idle_node, "burst: contract drain")
    assert time.monotonic() - t0 < 15, "a dead scheduler must fail within the client timeout"
    assert can_go_away.queue.snapshot().running  # the live one is unaffected


def test_an_unreadable_answer_is_queue_parse_error_naming_where(can_garble: QueueBackend) -> None:
    assert can_garble.garbled_queue is not None
    garbled = can_garble.garbled_queue()
    with pytest.raises(QueueParseError) as ei:
        garbled.snapshot()
    assert isinstance(ei.value, InputError) and ei.value.where
    assert not isinstance(ei.value, QueueUnavailable)


def _assert(cond: bool) -> None:
    assert cond

