"""KubernetesQueue as a grand challenge's queue (:class:`burst.ports.ChallengeQueue`), with the real
kubernetes client against the stand-in API server: time limits and priorities read, cordon
reservations, restore priorities, the challenge Job, hold of pods no Job owns, cancel."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from burst.domain import ChallengeJobKind, GrandChallenge, JobState, QueueSnapshot
from burst.errors import QueueError
from burst.ports import ChallengeQueue
from burst.queues.kubernetes.adapter import (
    RESERVATION_ANNOTATION,
    RESERVATION_CORDON_ANNOTATION,
    KubernetesQueue,
)
from burst.queues.kubernetes.parse import CHALLENGE_LABEL, RESTORE_PRIORITY_ANNOTATION, challenge_job_body
from burst.queues.kubernetes.settings import K8sSettings
from tests.k8s.conftest import eventually
from tests.support.fake_kube_api import FakeKube, ts

CLOUD_TAINT = {"key": "burst.dev/cloud", "value": "true", "effect": "NoSchedule"}

MANIFEST = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: ignored
  generateName: also-ignored-
spec:
  parallelism: 2
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: harbor.example/ml/challenge:1
        resources:
          limits:
            nvidia.com/gpu: "8"
"""


def challenge(text: str = MANIFEST, kind: ChallengeJobKind = ChallengeJobKind.KUBERNETES, duration_s: float = 600.0,
              cid: str = "gc-abc123") -> GrandChallenge:
    return GrandChallenge(id=cid, name="llm", start_at=time.time(), duration_s=duration_s, command="(inline)",
                          created_by="admin", job_kind=kind, job_text=text)


def snapshot_if(queue: KubernetesQueue, ok: Callable[[QueueSnapshot], bool]) -> QueueSnapshot | None:
    snap = queue.snapshot()
    return snap if ok(snap) else None


def node_state(kube: FakeKube, name: str) -> tuple[bool, dict[str, str]]:
    n = kube.nodes[name]
    ann = {k: v for k, v in n["metadata"]["annotations"].items() if k.startswith("burst.dev/reservation")}
    return bool(n["spec"].get("unschedulable")), ann


def test_kubernetes_queue_is_a_challenge_queue(queue: KubernetesQueue) -> None:
    cq: ChallengeQueue = queue  # mypy checks the structure; the runtime check the method names
    assert isinstance(cq, ChallengeQueue)


@pytest.mark.parametrize("watch", [True, False])
def test_time_limits_and_priorities_are_read(kube: FakeKube, make_queue: Any, watch: bool) -> None:
    now = time.time()
    kube.priority_classes["high"] = 1000
    kube.add_node("gpu01", 8)
    kube.add_node("gpu02", 8)
    # the Job's deadline counts from its status.startTime, which is before its pod started
    kube.add_job("short", "ml", gpus_per_pod=4, pods="running:gpu01", started=now - 100, active_deadline_s=400,
                 priority_class="high")
    with kube.lock:
        (pod,) = kube.pods_of_job("ml", "short")
        pod["status"]["startTime"] = ts(now - 40)
    kube.add_job("open", "ml", gpus_per_pod=4, pods="running:gpu01", started=now - 10)
    bare = kube.add_pod("bare", "ml", gpus=8, node="gpu02", started=now - 20, priority=5)
    with kube.lock:
        bare["spec"]["activeDeadlineSeconds"] = 60
    kube.add_job("held", "ml", gpus_per_pod=8, suspend=True, active_deadline_s=900)
    q = make_queue(watch=watch)
    snap = q.snapshot()
    run = {j.id: j for j in snap.running}
    short = run["ml/job/short"]
    assert short.priority == 1000, "the pod's spec.priority, from its PriorityClass"
    assert short.time_limit_s is not None and short.start_time is not None
    assert abs(short.expected_end() - (now - 100 + 400)) <= 1.5, "the Job's deadline, from the Job's start"
    assert run["ml/job/open"].time_limit_s is None and run["ml/job/open"].expected_end() is None
    assert run["ml/pod/bare"].priority == 5
    assert abs(run["ml/pod/bare"].expected_end() - (now - 20 + 60)) <= 1.5
    (held,) = snap.pending
    assert (held.id, held.state, held.time_limit_s) == ("ml/job/held", JobState.HELD, 900.0)


def test_reservation_cordons_its_nodes_and_lifts_only_its_own_cordon(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    kube.add_node("gpu02", 8, unschedulable=True)  # an admin cordoned it before
    kube.add_node("gpu03", 8)  # not in the reservation
    kube.add_node("b-1", 8, labels={"burst.dev/instance-id": "i-1"}, taints=[CLOUD_TAINT])
    before = {n: node_state(kube, n) for n in kube.nodes}

    for bad, why in ((["gpu01", "b-1"], "burst node"), (["gpu01", "gpu09"], "no node gpu09")):
        with pytest.raises(QueueError, match=why):
            queue.create_reservation("burst-gc-1", time.time() + 60, 600, nodes=bad)
        assert {n: node_state(kube, n) for n in kube.nodes} == before, "a refused reservation changes nothing"

    assert queue.create_reservation("burst-gc-1", time.time() + 60, 600, nodes=["gpu01", "gpu02"]) == "burst-gc-1"
    assert node_state(kube, "gpu01")[0] and node_state(kube, "gpu02")[0]
    assert node_state(kube, "gpu01")[1][RESERVATION_CORDON_ANNOTATION] == "burst-gc-1"
    assert RESERVATION_CORDON_ANNOTATION not in node_state(kube, "gpu02")[1]
    assert node_state(kube, "gpu02")[1][RESERVATION_ANNOTATION] == "burst-gc-1"
    assert node_state(kube, "gpu03") == before["gpu03"] and node_state(kube, "b-1") == before["b-1"]
    snap = queue.snapshot()
    assert {n.name for n in snap.nodes if not n.schedulable} == {"gpu01", "gpu02"}

    patches = sum(1 for c in kube.calls if c[0] == "PATCH")
    queue.create_reservation("burst-gc-1", time.time() + 60, 600, nodes=["gpu01", "gpu02"])  # idempotent
    assert sum(1 for c in kube.calls if c[0] == "PATCH") == patches, "nothing to change the second time"
    with pytest.raises(QueueError, match="in reservation burst-gc-1"):
        queue.create_reservation("burst-gc-2", time.time(), 60, nodes=["gpu02"])

    queue.delete_reservation("burst-gc-1")
    assert node_state(kube, "gpu01") == (False, {})
    assert node_state(kube, "gpu02") == (True, {}), "the admin's cordon stays"
    queue.delete_reservation("burst-gc-1")  # gone already: success
    queue.delete_reservation("never-made")
    assert {n: node_state(kube, n) for n in kube.nodes} == before


def test_reservation_sees_an_admin_cordon_racing_it(kube: FakeKube, queue: KubernetesQueue) -> None:
    """An admin cordons the node between burst's read and its patch: the patch is refused (409,
    guarded by the version read), burst reads again and only annotates, so lifting the
    reservation leaves the admin's cordon."""
    kube.add_node("gpu01", 8)
    raced = []

    def admin_cordons(method: str, path: str) -> None:
        if method == "PATCH" and path == "/api/v1/nodes/gpu01" and not raced:
            kube.nodes["gpu01"]["spec"]["unschedulable"] = True
            raced.append(path)

    kube.on_request = admin_cordons
    queue.create_reservation("burst-gc-1", None, 600, nodes=["gpu01"])
    assert raced
    assert node_state(kube, "gpu01") == (True, {RESERVATION_ANNOTATION: "burst-gc-1",
                                                "burst.dev/reservation-window": node_state(kube, "gpu01")[1][
                                                    "burst.dev/reservation-window"]})
    queue.delete_reservation("burst-gc-1")
    assert node_state(kube, "gpu01") == (True, {})


def test_submit_challenge_creates_the_job_on_the_reserved_nodes(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    kube.add_node("gpu02", 8)
    kube.add_node("gpu03", 8, unschedulable=True)  # cordoned by an admin: not for the challenge
    queue.create_reservation("burst-gc-abc123", None, 600, nodes=["gpu01", "gpu02", "gpu03"])
    gc = challenge(duration_s=599.5)
    jid = queue.submit_challenge(gc, name="burst-gc-abc123", reservation="burst-gc-abc123",
                                 nodes=["gpu01", "gpu02", "gpu03"])
    assert jid == "default/job/burst-gc-abc123"
    job = kube.jobs[("default", "burst-gc-abc123")]
    assert job["metadata"]["labels"][CHALLENGE_LABEL] == "gc-abc123"
    assert "generateName" not in job["metadata"]
    spec = job["spec"]
    assert (spec["suspend"], spec["activeDeadlineSeconds"], spec["parallelism"]) == (False, 600, 2)
    tspec = spec["template"]["spec"]
    assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"} \
        in tspec["tolerations"]
    (term,) = tspec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["gpu01", "gpu02"]}]
    pods = kube.pods_of_job("default", "burst-gc-abc123")
    assert len(pods) == 2 and all(p["spec"]["affinity"] == tspec["affinity"] for p in pods)

    # The snapshot shows it from its creation, also while the scheduler has not judged its pods.
    with kube.lock:
        for p in pods:
            p["status"]["conditions"] = []
    snap = eventually(lambda: snapshot_if(queue, lambda s: any(j.id == jid for j in s.pending)))
    (cj,) = [j for j in snap.pending if j.id == jid]
    assert (cj.state, cj.gpus, cj.nodes) == (JobState.PENDING, 16, 2)

    # idempotent: the same name is the same Job, never a second one
    assert queue.submit_challenge(gc, name="burst-gc-abc123", reservation="burst-gc-abc123",
                                  nodes=["gpu01", "gpu02"]) == jid
    assert len(kube.pods_of_job("default", "burst-gc-abc123")) == 2
    with pytest.raises(QueueError, match="not this challenge's"):
        queue.submit_challenge(challenge(cid="gc-other"), name="burst-gc-abc123", reservation="burst-gc-abc123",
                               nodes=["gpu01"])

    # finished (the Job controller's condition): no longer reported
    with kube.lock:
        for p in kube.pods_of_job("default", "burst-gc-abc123"):
            p["status"]["phase"] = "Succeeded"
        job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    eventually(lambda: jid not in {j.id for j in (*queue.snapshot().pending, *queue.snapshot().running)})

    queue.cancel([jid])
    queue.cancel([jid])  # gone: success
    assert ("default", "burst-gc-abc123") not in kube.jobs and kube.pods_of_job("default", "burst-gc-abc123") == []
    assert ("DELETE", "/apis/batch/v1/namespaces/default/jobs/burst-gc-abc123") in kube.calls


@pytest.mark.parametrize(("text", "kind", "problem"), [
    (MANIFEST, ChallengeJobKind.SLURM, "slurm job"),
    ("kind: Job\n  bad: [", ChallengeJobKind.KUBERNETES, "not YAML"),
    (MANIFEST.replace("kind: Job", "kind: Deployment"), ChallengeJobKind.KUBERNETES, "not a batch/v1 Job"),
    (MANIFEST + "---\n" + MANIFEST, ChallengeJobKind.KUBERNETES, "2 documents"),
    ("apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {}}}\n", ChallengeJobKind.KUBERNETES,
     "no spec.template.spec.containers"),
    (MANIFEST.replace("      restartPolicy: Never\n", ""), ChallengeJobKind.KUBERNETES, "HTTP 422.*restartPolicy"),
])
def test_a_bad_challenge_job_is_a_queue_error_naming_it(kube: FakeKube, queue: KubernetesQueue, text: str,
                                                       kind: ChallengeJobKind, problem: str) -> None:
    kube.add_node("gpu01", 8)
    with pytest.raises(QueueError, match=problem):
        queue.submit_challenge(challenge(text, kind), name="burst-gc-1", reservation="r", nodes=["gpu01"])
    assert kube.jobs == {}


def test_no_usable_node_is_a_queue_error(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8, unschedulable=True)
    with pytest.raises(QueueError, match="none of its 2 node"):
        queue.submit_challenge(challenge(), name="burst-gc-1", reservation="r", nodes=["gpu01", "gpu09"])


def test_challenge_job_body_keeps_the_manifests_own_placement_and_shorter_deadline() -> None:
    text = MANIFEST.replace("    spec:\n      restartPolicy", """    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: zone, operator: In, values: [a]}]
            - matchExpressions: [{key: zone, operator: In, values: [b]}]
      restartPolicy""").replace("  parallelism: 2", "  activeDeadlineSeconds: 30\n  parallelism: 2")
    body = challenge_job_body(text, name="n", namespace="ml", challenge_id="gc-1", nodes=["b", "a"], duration_s=600)
    terms = body["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    ours = {"key": "metadata.name", "operator": "In", "values": ["a", "b"]}
    assert [t["matchFields"] for t in terms] == [[ours], [ours]], "ANDed into every term"
    assert [t["matchExpressions"][0]["values"] for t in terms] == [["a"], ["b"]]
    assert body["spec"]["activeDeadlineSeconds"] == 30
    assert body["metadata"] == {"name": "n", "namespace": "ml", "labels": {CHALLENGE_LABEL: "gc-1"}}


def test_release_in_order_with_restore_priorities(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    kube.add_job("a", "ml", gpus_per_pod=4, pods="running:gpu01")
    kube.add_job("b", "ml", gpus_per_pod=4, pods="running:gpu01")
    queue.hold(["ml/job/a", "ml/job/b"])
    assert {j.id for j in queue.snapshot().pending if j.state is JobState.HELD} == {"ml/job/a", "ml/job/b"}
    mark = kube.rv
    for jid, prio in (("ml/job/b", 11), ("ml/job/a", 10)):  # the runner: release, then set_priority
        queue.release([jid])
        queue.set_priority(jid, prio)
    queue.set_priority("ml/job/gone", 5)  # gone: success
    queue.set_priority("ml/pod/bare", 5)  # a bare pod has no Job: nothing to do
    resumed = [e.obj["metadata"]["name"] for e in kube.events
               if e.rv > mark and e.kind == "jobs" and e.type == "MODIFIED" and e.obj["spec"]["suspend"] is False
               and RESTORE_PRIORITY_ANNOTATION not in e.obj["metadata"]["annotations"]]
    assert resumed == ["b", "a"], "resumed one by one, in the order given"
    assert kube.jobs[("ml", "b")]["metadata"]["annotations"][RESTORE_PRIORITY_ANNOTATION] == "11"
    snap = eventually(lambda: snapshot_if(queue, lambda s: len(s.pending) == 2))
    assert [(j.id, j.priority, j.state) for j in snap.pending] == [
        ("ml/job/b", 11, JobState.PENDING), ("ml/job/a", 10, JobState.PENDING)]


def test_hold_refuses_a_pod_nothing_owns(kube: FakeKube, queue: KubernetesQueue) -> None:
    """Suspending needs a Job; evicting a pod with no owner would lose it for good. The other jobs
    of the call are held, then the call fails naming the pod, which keeps running."""
    kube.add_node("gpu01", 8)
    kube.add_job("train", "ml", gpus_per_pod=4, pods="running:gpu01")
    kube.add_pod("loner", "ml", gpus=4, node="gpu01")
    with pytest.raises(QueueError, match="ml/loner.*no Job or controller owns"):
        queue.hold(["ml/job/train", "ml/pod/loner"])
    assert kube.jobs[("ml", "train")]["spec"]["suspend"] is True
    assert kube.pods[("ml", "loner")]["status"]["phase"] == "Running"
    assert not any(c[1].endswith("/loner/eviction") for c in kube.calls)


def test_challenge_namespace_must_be_one_burst_reads(kube: FakeKube) -> None:
    assert K8sSettings(host=kube.url).challenge_ns == "default"
    assert K8sSettings(host=kube.url, namespaces=["ml", "hpc"]).challenge_ns == "ml"
    assert K8sSettings(host=kube.url, namespaces=["ml", "hpc"], challenge_namespace="hpc").challenge_ns == "hpc"
    with pytest.raises(ValidationError, match="not in namespaces"):
        K8sSettings(host=kube.url, namespaces=["ml"], challenge_namespace="gc")


def test_the_snapshot_after_a_submit_shows_the_challenge_job(kube: FakeKube, queue: KubernetesQueue) -> None:
    """Read-your-writes for the Job burst creates: with a slow watch, the snapshot right after the
    submit waits for it rather than show no challenge Job (the runner would take that for ended)."""
    kube.add_node("gpu01", 8)
    kube.add_node("gpu02", 8)
    queue.snapshot()  # the watchers run
    kube.watch_delay_s = 0.5
    jid = queue.submit_challenge(challenge(), name="burst-gc-abc123", reservation="r", nodes=["gpu01", "gpu02"])
    snap = queue.snapshot()
    assert jid in {j.id for j in (*snap.pending, *snap.running)}
