"""KubernetesQueue with the real kubernetes client against the stand-in API server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from burst.domain import JobState
from burst.errors import QueueError, QueueParseError, QueueUnavailable
from burst.queues.kubernetes.adapter import CHECKPOINT_ANNOTATION, KubernetesQueue, NodeNotIdle
from burst.queues.kubernetes.parse import parse_pod, parse_quantity
from burst.queues.kubernetes.settings import K8sSettings
from tests.k8s.conftest import eventually
from tests.support.fake_kube_api import FakeKube, ts

CLOUD_TAINT = {"key": "burst.dev/cloud", "value": "true", "effect": "NoSchedule"}
OPT_IN = {"burst.dev/allow-cloud": "true"}


def seed_full_cluster(kube: FakeKube) -> None:
    for i in (1, 2):
        kube.add_node(f"gpu0{i}", 8)
    kube.add_node("cpu01", 0)
    kube.add_job("fill1", "ml", gpus_per_pod=8, pods="running:gpu01")
    kube.add_job("fill2", "ml", gpus_per_pod=6, pods="running:gpu02")
    kube.add_pod("sidecar", "ml", node="gpu02")  # no GPU: does not count


def test_nodes_gpu_use_from_pods(kube: FakeKube, queue: KubernetesQueue) -> None:
    seed_full_cluster(kube)
    kube.add_pod("done", "ml", gpus=2, node="gpu02", phase="Succeeded")  # terminal: not counted
    kube.add_node("gpu03", 8, ready=False)
    kube.add_node("gpu04", 8, unschedulable=True)
    kube.add_node("b-1", 8, labels={"burst.dev/instance-id": "b-1a2b3c4d5e6f7a8b"}, taints=[CLOUD_TAINT])
    nodes = {n.name: n for n in queue.snapshot().nodes}
    assert (nodes["gpu01"].gpus, nodes["gpu01"].gpus_used, nodes["gpu01"].running_jobs) == (8, 8, 1)
    assert (nodes["gpu02"].gpus_used, nodes["gpu02"].gpus_free) == (6, 2)
    assert nodes["gpu01"].gpu_model == "NVIDIA-A100-SXM4-80GB"
    assert nodes["cpu01"].gpus == 0
    assert not nodes["gpu03"].schedulable and not nodes["gpu04"].schedulable
    assert not nodes["gpu03"].ready and nodes["gpu04"].ready  # NotReady vs merely cordoned
    b = nodes["b-1"]
    assert b.instance_id == "b-1a2b3c4d5e6f7a8b" and b.is_cloud and b.schedulable  # taint != cordon
    assert b.labels["burst.dev/cloud"] == "true"
    assert not any(n.is_cloud for name, n in nodes.items() if name != "b-1")


def test_unschedulable_gpu_pods_become_pending_jobs_with_gangs(kube: FakeKube, queue: KubernetesQueue) -> None:
    seed_full_cluster(kube)
    t0 = time.time() - 100
    kube.add_job("train", "ml", parallelism=3, gpus_per_pod=8, labels=OPT_IN, created=t0)
    for i in range(2):
        kube.add_pod(f"pg-{i}", "nlp", gpus=8, labels={"scheduling.x-k8s.io/pod-group": "llm"},
                     created=t0 + 1 + i, priority=100)
    for i in range(2):
        kube.add_pod(f"vc-{i}", "nlp", gpus=4, annotations={"scheduling.k8s.io/group-name": "vg", **OPT_IN})
    for i in range(2):
        kube.add_pod(f"js-{i}", "rl", gpus=8, labels={"jobset.sigs.k8s.io/jobset-name": "sweep"})
    kube.add_pod("solo", "vision", gpus=2, labels={"burst.dev/owner": "alice", "burst.dev/team": "cv"},
                 node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    kube.add_pod("cpu-only", "vision", gpus=0)  # no GPUs: not burst's business
    kube.add_pod("not-judged", "vision", gpus=1, unschedulable=False)  # scheduler has not looked yet

    snap = queue.snapshot()
    pend = {j.id: j for j in snap.pending}
    assert set(pend) == {"ml/job/train", "nlp/podgroup/llm", "nlp/podgroup/vg", "rl/jobset/sweep", "vision/pod/solo"}
    tr = pend["ml/job/train"]
    assert (tr.gpus, tr.nodes, tr.gpus_per_node, tr.is_gang, tr.may_burst) == (24, 3, 8, True, True)
    assert tr.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in tr.labels["message"]
    assert abs(tr.submit_time - t0) < 1.01 and tr.team == "ml" and tr.state is JobState.PENDING
    pg = pend["nlp/podgroup/llm"]
    assert (pg.gpus, pg.nodes, pg.priority, pg.may_burst) == (16, 2, 100, False)
    assert pend["nlp/podgroup/vg"].may_burst  # opt-in by annotation
    assert (pend["rl/jobset/sweep"].gpus, pend["rl/jobset/sweep"].nodes) == (16, 2)
    solo = pend["vision/pod/solo"]
    assert (solo.gpus, solo.nodes, solo.gpus_per_node, solo.is_gang) == (2, 1, 0, False)
    assert (solo.owner, solo.team, solo.gpu_model) == ("alice", "cv", "NVIDIA-H100-80GB-HBM3")
    assert snap.pending[0].id == "nlp/podgroup/llm"  # highest priority first

    run = {j.id: j for j in snap.running}
    assert set(run) == {"ml/job/fill1", "ml/job/fill2"}
    assert run["ml/job/fill1"].node_names == ("gpu01",) and run["ml/job/fill1"].start_time is not None


def test_running_elapsed_time(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    started = time.time() - 3600
    kube.add_pod("long", "ml", gpus=8, node="gpu01", started=started)
    (job,) = queue.snapshot().running
    # at a fixed instant (the API's startTime has whole seconds), not "now": a slow first snapshot
    # on a loaded machine must not count
    assert job.id == "ml/pod/long" and 0 <= job.elapsed(started + 3600) - 3600 < 1.01


def test_opt_in_key_is_configurable(kube: FakeKube, make_queue: Callable[..., KubernetesQueue]) -> None:
    kube.add_pod("a", "ml", gpus=1, labels={"example.com/cloud-ok": "yes"})
    kube.add_pod("b", "ml", gpus=1, labels=OPT_IN)
    q = make_queue(opt_in_key="example.com/cloud-ok", opt_in_value="yes")
    flags = {j.id: j.may_burst for j in q.snapshot().pending}
    assert flags == {"ml/pod/a": True, "ml/pod/b": False}


def test_drain_cordons_and_evicts_then_undrain_and_remove(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("b-1", 8, labels={"burst.dev/instance-id": "b-1"}, taints=[CLOUD_TAINT])
    kube.add_pod("work", "ml", gpus=8, node="b-1")
    kube.add_pod("pdb", "ml", gpus=0, node="b-1")
    kube.protect("ml", "pdb")
    kube.add_pod("ds", "kube-system", node="b-1", owner=("DaemonSet", "nvidia-device-plugin"))

    # A drain for idleness refuses while a GPU pod runs there (the snapshot it came from was
    # stale), and changes nothing...
    with pytest.raises(NodeNotIdle, match="ml/work"):
        queue.drain_node("b-1", "idle past timeout")
    assert not kube.nodes["b-1"]["spec"].get("unschedulable")
    assert ("ml", "work") in kube.pods
    # ...while a drain that means it (busy_ok: a grand challenge clearing nodes) evicts
    queue.drain_node("b-1", "idle past timeout", busy_ok=True)
    node = kube.nodes["b-1"]
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"]["burst.dev/drain-reason"] == "idle past timeout"
    assert ("ml", "work") not in kube.pods  # evicted
    assert ("ml", "pdb") in kube.pods  # the budget said no (429): left for the next call
    assert ("kube-system", "ds") in kube.pods  # DaemonSet pods stay
    assert ("POST", "/api/v1/namespaces/ml/pods/work/eviction") in kube.calls
    n = next(n for n in queue.snapshot().nodes if n.name == "b-1")
    assert not n.schedulable and n.gpus_used == 0

    kube.protected.clear()
    queue.drain_node("b-1", "idle past timeout")  # idempotent; now the budget allows it (no GPU pod left)
    assert ("ml", "pdb") not in kube.pods

    queue.undrain_node("b-1", "work arrived")
    assert "unschedulable" not in kube.nodes["b-1"]["spec"]
    assert "burst.dev/drain-reason" not in kube.nodes["b-1"]["metadata"]["annotations"]
    assert next(n for n in queue.snapshot().nodes if n.name == "b-1").schedulable

    queue.remove_node("b-1")
    assert "b-1" not in kube.nodes
    queue.remove_node("b-1")  # 404 = success
    queue.drain_node("b-1", "gone")  # nothing to drain
    with pytest.raises(QueueError):
        queue.undrain_node("b-1", "gone")


def test_hold_suspends_job_and_release_unsuspends(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    kube.add_node("gpu02", 8)
    kube.add_job("train", "ml", parallelism=2, gpus_per_pod=8, pods="running:gpu01,gpu02", labels=OPT_IN)
    # not a Job's: evicted by hold, and its ReplicaSet makes it again (an ownerless pod is refused,
    # see test_hold_refuses_a_pod_nothing_owns)
    kube.add_pod("bare", "ml", gpus=1, node="gpu01", owner=("ReplicaSet", "web-1"))
    jid = "ml/job/train"
    assert {j.id for j in queue.snapshot().running} == {jid, "ml/pod/bare"}

    queue.checkpoint([jid])
    pods = kube.pods_of_job("ml", "train")
    assert len(pods) == 2 and all(CHECKPOINT_ANNOTATION in p["metadata"]["annotations"] for p in pods)

    queue.hold([jid, "ml/pod/bare"])
    queue.hold([jid, "ml/pod/bare"])  # idempotent: already suspended, pod already gone
    assert kube.jobs[("ml", "train")]["spec"]["suspend"] is True
    assert kube.pods_of_job("ml", "train") == [] and ("ml", "bare") not in kube.pods
    snap = queue.snapshot()
    assert snap.running == ()
    (held,) = snap.pending
    assert (held.id, held.state, held.gpus, held.nodes, held.may_burst) == (jid, JobState.HELD, 16, 2, True)
    assert all(n.gpus_used == 0 for n in snap.nodes)

    queue.release([jid, "ml/pod/bare"])
    queue.release([jid])
    assert kube.jobs[("ml", "train")]["spec"]["suspend"] is False
    assert len(kube.pods_of_job("ml", "train")) == 2  # the Job controller made new pods
    queue.release(["ml/job/nosuch"])  # gone: success
    queue.hold(["ml/job/nosuch"])
    with pytest.raises(QueueError):
        queue.hold(["not-an-id"])


def test_hold_pod_group_suspends_its_jobs(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    grp = {"scheduling.x-k8s.io/pod-group": "llm"}
    kube.add_job("llm-a", "nlp", gpus_per_pod=4, pods="running:gpu01", labels=grp)
    kube.add_job("llm-b", "nlp", gpus_per_pod=4, pods="running:gpu01", labels=grp)
    (run,) = queue.snapshot().running
    assert run.id == "nlp/podgroup/llm" and run.gpus == 8 and run.nodes == 2
    queue.hold([run.id])
    assert all(kube.jobs[("nlp", n)]["spec"]["suspend"] for n in ("llm-a", "llm-b"))
    queue.release([run.id])
    assert not any(kube.jobs[("nlp", n)]["spec"]["suspend"] for n in ("llm-a", "llm-b"))


@pytest.mark.parametrize("watch", [True, False])
def test_namespaces_setting(kube: FakeKube, make_queue: Callable[..., KubernetesQueue], watch: bool) -> None:
    kube.add_pod("a", "ml", gpus=1)
    kube.add_pod("b", "other", gpus=1)
    q = make_queue(namespaces=["ml"], watch=watch)
    assert [j.id for j in q.snapshot().pending] == ["ml/pod/a"]
    kube.add_pod("c", "other", gpus=1)
    kube.add_pod("d", "ml", gpus=1)
    eventually(lambda: [j.id for j in q.snapshot().pending] == ["ml/pod/a", "ml/pod/d"])
    assert "ml/pod/d" in {j.id for j in q.snapshot().pending}
    if watch:
        assert kube.lists("/api/v1/namespaces/ml/pods") == 1 and kube.lists("/api/v1/pods") == 0


# ---- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("watch", [True, False])
def test_server_errors_and_timeouts_are_unavailable(kube: FakeKube, make_queue: Callable[..., KubernetesQueue],
                                                    watch: bool) -> None:
    q = make_queue(timeout_s=0.5, watch=watch)
    kube.fail_next(1, 503)
    with pytest.raises(QueueUnavailable, match="503"):
        q.snapshot()
    kube.delay_s = 6.0  # far beyond the 0.5 s timeout, so a loaded machine cannot blur the two
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailable):
        q.snapshot()
    assert time.monotonic() - t0 < 4.0  # gave up at its timeout, did not wait for the answer
    kube.delay_s = 0
    q.snapshot()


def test_dead_api_server_is_unavailable(kube: FakeKube, settings: K8sSettings,
                                       make_queue: Callable[..., KubernetesQueue]) -> None:
    q = make_queue()
    kube.stop()
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailable):
        q.snapshot()
    assert time.monotonic() - t0 < settings.timeout_s + 1


def test_client_errors_are_queue_errors(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01")
    kube.fail_next(1, 403)
    with pytest.raises(QueueError, match="403") as ei:
        queue.drain_node("gpu01", "x")
    assert not isinstance(ei.value, QueueUnavailable)


@pytest.mark.parametrize("watch", [True, False])
def test_unreadable_objects_name_the_field(kube: FakeKube, make_queue: Callable[..., KubernetesQueue],
                                           watch: bool) -> None:
    queue = make_queue(watch=watch)
    pod = kube.add_pod("odd", "ml", gpus=1)
    pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "lots"
    with pytest.raises(QueueParseError) as ei:
        queue.snapshot()
    assert ei.value.where == "pod ml/odd.spec.containers[0].resources.requests[nvidia.com/gpu]"
    with kube.lock:  # one change as far as a watcher can tell
        del kube.pods[("ml", "odd")]
        node = kube.add_node("n1")
        node["status"]["allocatable"]["nvidia.com/gpu"] = {"x": 1}

    def node_error() -> bool:  # with watch, once the deletion and the new node have arrived
        try:
            queue.snapshot()
        except QueueParseError as e:
            return e.where == "node n1.status.allocatable[nvidia.com/gpu]"
        return False

    eventually(node_error)


def test_pure_parsers() -> None:
    assert parse_quantity("8", "q") == 8 and parse_quantity("500m", "q") == 0.5 and parse_quantity("1Ki", "q") == 1024
    with pytest.raises(QueueParseError):
        parse_quantity("8 GPUs", "q")
    base: dict[str, Any] = {"metadata": {"name": "p", "namespace": "n", "creationTimestamp": ts(0)},
            "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 2}}}],
                     "initContainers": [{"resources": {"requests": {"nvidia.com/gpu": "4"}}}]},
            "status": {"phase": "Pending"}}
    assert parse_pod(base, "nvidia.com/gpu").gpus == 4  # init container dominates
    bad = {**base, "metadata": {**base["metadata"], "creationTimestamp": "yesterday"}}
    with pytest.raises(QueueParseError) as ei:
        parse_pod(bad, "nvidia.com/gpu")
    assert ei.value.where == "pod n/p.metadata.creationTimestamp"


def test_gang_hold_taint_is_shown_and_released(kube: FakeKube, queue: KubernetesQueue) -> None:
    gang = {"key": "burst.dev/gang", "value": "g-1", "effect": "NoSchedule"}
    kube.add_node("b-1", 8, labels={"burst.dev/instance-id": "b-1"}, taints=[CLOUD_TAINT, gang])
    kube.add_node("b-2", 8, labels={"burst.dev/instance-id": "b-2"}, taints=[CLOUD_TAINT])
    nodes = {n.name: n for n in queue.snapshot().nodes}
    assert nodes["b-1"].labels["burst.dev/gang-hold"] == "g-1" and "burst.dev/gang-hold" not in nodes["b-2"].labels
    queue.release_gang_hold("b-1")
    assert kube.nodes["b-1"]["spec"]["taints"] == [CLOUD_TAINT]  # only the gang taint went
    assert "burst.dev/gang-hold" not in {n.name: n for n in queue.snapshot().nodes}["b-1"].labels
    queue.release_gang_hold("b-1")  # nothing left to release: success
    queue.release_gang_hold("no-such-node")  # unknown node: success
    assert kube.nodes["b-2"]["spec"]["taints"] == [CLOUD_TAINT]
