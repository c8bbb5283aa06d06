"""Issue 10 on Kubernetes, end to end: a grand challenge driven by the ordinary
``Controller.tick(time.time())`` over ``KubernetesQueue`` (the REAL kubernetes client, over HTTP,
against the stand-in API server in tests/support/fake_kube_api.py) as its ``challenge_queue``.

The cluster: three on-prem 8-GPU nodes full of Job pods, a fourth that an admin cordoned, and a
burst node running a Job of its own; one more Job waits. ``train-a`` (PriorityClass ``high``) and
``train-b`` (older, default priority) run until stopped; ``short`` has an
``activeDeadlineSeconds`` that ends it after the drain window opens but before the start, so it is
warned of nothing and never preempted. A challenge over the whole on-prem cluster is scheduled a
few seconds ahead with short windows (``ChallengeSettings``).

The harness plays only what Kubernetes runs outside the API server, on the stand-in's objects:

* kube-scheduler: binds a pending pod to a Ready node with free GPUs whose taints it tolerates,
  that matches its required node affinity (``metadata.name`` fields), and that is not cordoned
  unless it tolerates ``node.kubernetes.io/unschedulable`` (the NodeUnschedulable plugin);
* the kubelet: a bound pod runs; a running pod that gets the checkpoint annotation writes a
  checkpoint (recorded here), and a pod of the same Job that starts later resumes from it; the
  challenge's pods succeed after a few seconds, the others run on;
* the Job controller: a Job past its ``activeDeadlineSeconds`` loses its pods and is marked
  ``Failed`` (DeadlineExceeded); a Job whose pods all succeeded is marked ``Complete`` (the
  stand-in itself deletes a suspended Job's pods and makes new ones on resume).

Asserted in the API server's own objects and its event history (the order of writes), in the
store and in what people were told; the time between steps is printed (run with ``-s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from burst import grand_challenge as gcmod
from burst.controller import Controller, TickResult
from burst.domain import ChallengeEnding, ChallengeJobKind, ChallengeState, GrandChallenge
from burst.faults import GRAND_CHALLENGE_POINTS
from burst.grand_challenge import schedule_challenge
from burst.queues.kubernetes.adapter import (
    CHECKPOINT_ANNOTATION,
    RESERVATION_ANNOTATION,
    RESERVATION_CORDON_ANNOTATION,
    KubernetesQueue,
)
from burst.queues.kubernetes.parse import CHALLENGE_LABEL, RESTORE_PRIORITY_ANNOTATION
from burst.queues.kubernetes.settings import K8sSettings
from burst.store.sql import SqlStore
from policies import PolicyConfig
from policies.grand_challenge import ChallengeSettings, reservation_name
from policies.model import OverflowConfig, ScaleInConfig
from tests.e2e.conftest import CLUSTER, Timeline, tick_until
from tests.support.fake_kube_api import FakeKube, ts

C = ChallengeState
GPU = "nvidia.com/gpu"
POLICY = PolicyConfig(overflow=OverflowConfig(wait_threshold_s=0),
                      scale_in=ScaleInConfig(idle_timeout_s=1, join_timeout_s=120), tick_interval_s=1)
SETTINGS = ChallengeSettings(notice_offsets_s=(5.0,), drain_window_s=4.0, checkpoint_grace_s=1.0,
                             release_retry_s=3.0, restore_poll_s=0.5)
START_IN = 8.0
DURATION = 40.0
CHALLENGE_RUN_S = 2.0
CLOUD_TAINT = {"key": "burst.dev/cloud", "value": "true", "effect": "NoSchedule"}
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
ONPREM = ("gpu01", "gpu02", "gpu03")

MANIFEST = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: llm-pretrain
spec:
  parallelism: 2
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: harbor.example/ml/llm:1
        resources:
          limits:
            nvidia.com/gpu: "8"
"""


class Notes:
    """The Notifier: what each audience was told."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def notify(self, audience: str, text: str) -> None:
        self.sent.append((audience, text))

    def to(self, audience: str) -> list[str]:
        return [t for a, t in self.sent if a == audience]


def owner_job(pod: dict[str, Any]) -> str:
    return next((o["name"] for o in pod["metadata"].get("ownerReferences", []) if o["kind"] == "Job"), "")


def tolerates(pod: dict[str, Any], key: str, value: str | None = None) -> bool:
    for t in pod["spec"].get("tolerations") or []:
        if t.get("key") == key and t.get("effect", "NoSchedule") == "NoSchedule" and (
                t.get("operator") == "Exists" or t.get("value") == value):
            return True
    return False


def affinity_allows(pod: dict[str, Any], node: str) -> bool:
    req = (((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = req.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(all(f["key"] == "metadata.name" and f["operator"] == "In" and node in f["values"]
                   for f in t.get("matchFields") or []) and not t.get("matchExpressions") for t in terms)


@dataclass
class World:
    """kube-scheduler, the kubelets and the Job controller, played on the stand-in's objects."""

    kube: FakeKube
    tl: Timeline
    checkpoints: dict[str, float] = field(default_factory=dict)  # Job -> checkpoint stamp it wrote
    resumed: dict[str, float] = field(default_factory=dict)  # Job -> the checkpoint a new pod resumed from
    started: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # Job -> [(pod, node)] bound
    bound_at: dict[str, float] = field(default_factory=dict)  # pod -> when bound (monotonic)
    cordoned_during_challenge: dict[str, bool] = field(default_factory=dict)

    def gpus(self, pod: dict[str, Any]) -> int:
        return int(pod["spec"]["containers"][0]["resources"].get("limits", {}).get(GPU, "0"))

    def free(self, node: dict[str, Any]) -> int:
        name = node["metadata"]["name"]
        used = sum(self.gpus(p) for p in self.kube.pods.values()
                   if p["spec"].get("nodeName") == name and p["status"]["phase"] not in ("Succeeded", "Failed"))
        return int(node["status"]["allocatable"].get(GPU, "0")) - used

    def step(self, now: float) -> None:
        k = self.kube
        with k.lock:
            # kubelet: a running pod asked to checkpoint writes one
            for pod in k.pods.values():
                stamp = pod["metadata"]["annotations"].get(CHECKPOINT_ANNOTATION)
                job = owner_job(pod)
                if stamp and pod["status"]["phase"] == "Running" and job not in self.checkpoints:
                    self.checkpoints[job] = float(stamp)
                    self.tl.mark(f"kubelet: {job} wrote a checkpoint")
            # Job controller: deadlines and completions
            for (ns, name), job in k.jobs.items():
                st, spec = job.setdefault("status", {}), job["spec"]
                if spec.get("suspend") or any(c["status"] == "True" for c in st.get("conditions", [])):
                    continue
                pods = k.pods_of_job(ns, name)
                ads, begun = spec.get("activeDeadlineSeconds"), st.get("startTime")
                if ads and begun and datetime_s(begun) + ads <= now:
                    for p in pods:
                        del k.pods[(ns, p["metadata"]["name"])]
                    st["conditions"] = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
                    self.tl.mark(f"job controller: {name} DeadlineExceeded")
                elif pods and sum(p["status"]["phase"] == "Succeeded" for p in pods) >= spec.get("completions", 1):
                    st["conditions"] = [{"type": "Complete", "status": "True"}]
                    st["succeeded"] = len(pods)
                    self.tl.mark(f"job controller: {name} Complete")
            # kubelet: the challenge's pods finish their work
            for (_, name), pod in k.pods.items():
                if (CHALLENGE_LABEL in pod["metadata"]["labels"] and pod["status"]["phase"] == "Running"
                        and time.monotonic() - self.bound_at.get(name, time.monotonic()) >= CHALLENGE_RUN_S):
                    pod["status"]["phase"] = "Succeeded"
                    self.tl.mark(f"kubelet: challenge pod {name} Succeeded")
            # kube-scheduler
            for (_, name), pod in k.pods.items():
                if pod["spec"].get("nodeName") or pod["status"]["phase"] != "Pending":
                    continue
                for node in k.nodes.values():
                    nname = node["metadata"]["name"]
                    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
                    if (not ready or self.free(node) < self.gpus(pod) or not affinity_allows(pod, nname)
                            or (node["spec"].get("unschedulable") and not tolerates(pod, UNSCHEDULABLE))
                            or any(t["effect"] == "NoSchedule" and not tolerates(pod, t["key"], t.get("value"))
                                   for t in node["spec"].get("taints") or [])):
                        continue
                    pod["spec"]["nodeName"] = nname
                    pod["status"] = {"phase": "Running", "startTime": ts(time.time()),
                                     "conditions": [{"type": "PodScheduled", "status": "True"}]}
                    self.bound_at[name] = time.monotonic()
                    job = owner_job(pod)
                    self.started.setdefault(job, []).append((name, nname))
                    if job in self.checkpoints:
                        self.resumed[job] = self.checkpoints[job]
                    if CHALLENGE_LABEL in pod["metadata"]["labels"]:
                        for n in (*ONPREM, "gpu04", "b-1"):
                            self.cordoned_during_challenge[n] = bool(k.nodes[n]["spec"].get("unschedulable"))
                    self.tl.mark(f"scheduler: {job or name} pod bound to {nname}")
                    break


def datetime_s(v: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


def seed(kube: FakeKube, t0: float) -> None:
    kube.priority_classes["high"] = 100
    for n in ONPREM:
        kube.add_node(n, 8)
    kube.add_node("gpu04", 8, unschedulable=True)  # an admin's cordon (maintenance)
    kube.add_node("b-1", 8, labels={"burst.dev/instance-id": "i-b1"}, taints=[CLOUD_TAINT])
    kube.add_job("train-a", "ml", gpus_per_pod=8, pods="running:gpu01", created=t0 - 300, started=t0 - 200,
                 priority_class="high", labels={"burst.dev/owner": "alice"})
    kube.add_job("train-b", "ml", gpus_per_pod=8, pods="running:gpu02", created=t0 - 600, started=t0 - 500,
                 labels={"burst.dev/owner": "bob"})
    # ends by its deadline 1.5 s before the start: after the drain window opened
    kube.add_job("short", "ml", gpus_per_pod=8, pods="running:gpu03", created=t0 - 100, started=t0 - 100,
                 active_deadline_s=int(100 + START_IN - 1.5), labels={"burst.dev/owner": "carol"})
    kube.add_job("cloudy", "ml", gpus_per_pod=8, pods="running:b-1", created=t0 - 50, started=t0 - 50,
                 labels={"burst.dev/owner": "dave", "burst.dev/allow-cloud": "true"})
    kube.add_job("waiting", "ml", gpus_per_pod=16, labels={"burst.dev/owner": "erin"})  # fits no node


def job_events(kube: FakeKube, name: str) -> list[tuple[int, dict[str, Any]]]:
    return [(e.rv, e.obj) for e in kube.events if e.kind == "jobs" and e.obj["metadata"]["name"] == name]


def first_rv(events: list[tuple[int, dict[str, Any]]], pred: Any) -> int | None:
    return next((rv for rv, o in events if pred(o)), None)


@dataclass
class Run:
    """One challenge driven to its end through Controller.tick on the seeded cluster."""

    kube: FakeKube
    tl: Timeline
    world: World
    store: SqlStore
    notes: Notes
    controller: Controller
    cid: str = ""
    errors: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)

    def after(self, r: TickResult) -> None:
        if r.challenges is not None:
            self.errors.extend(r.challenges.errors)
            for c, a, b in r.challenges.transitions:
                self.tl.mark(f"tick: {c} {a} -> {b}")
                self.phases.append(b)

    def to_the_end(self) -> GrandChallenge:
        def finished(r: TickResult) -> GrandChallenge | None:
            g = self.store.get_challenge(self.cid)
            assert g is not None
            return g if g.state in (C.DONE, C.CANCELLED, C.FAILED) else None

        try:
            g, _ = tick_until(self.controller, finished, timeout=START_IN + DURATION, what="the challenge to end",
                              before=self.world.step, after=self.after, interval=0.2)
        finally:
            self.tl.report()
        # the restored jobs start again on the freed nodes
        tick_until(self.controller, lambda r: all(self.world.started.get(j) for j in ("train-a", "train-b")),
                   timeout=10, what="the restored jobs running again", before=self.world.step, after=self.after)
        assert isinstance(g, GrandChallenge)
        return g


@contextmanager
def challenge_run(kube: FakeKube, tmp_path: Path, title: str, manifest: str = MANIFEST,
                  watch: bool = True) -> Iterator[Run]:
    tl = Timeline(title)
    t0 = time.time()
    seed(kube, t0)
    queue = KubernetesQueue(K8sSettings(host=kube.url, timeout_s=5, watch=watch))
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    notes = Notes()
    controller = Controller(cluster=CLUSTER, queue=queue, providers={}, store=store, offers=[], policy=POLICY,
                            gang_hold=queue, challenge_queue=queue, challenge_settings=SETTINGS, notifier=notes)
    run = Run(kube, tl, World(kube, tl), store, notes, controller)
    try:
        gc = schedule_challenge(store, now=t0, actor="ADMIN", name="llm-pretrain", start_at=t0 + START_IN,
                                duration_s=DURATION, onprem_nodes=4, job_kind=ChallengeJobKind.KUBERNETES,
                                job_text=manifest, settings=SETTINGS)
        run.cid = gc.id
        tl.mark(f"scheduled {gc.id} for +{START_IN:.0f}s")
        yield run
    finally:
        queue.close()
        store.close()


def checkpointed_before_suspend_and_resumed(kube: FakeKube, world: World) -> tuple[dict[str, int], dict[str, int]]:
    """Per preempted Job: the checkpoint annotation came before its suspension, it was resumed
    after, and its new pod resumed from the checkpoint its old pod wrote. Returns the rv of the
    first checkpoint annotation per Job, and of the resume per preempted Job."""
    pod_ckpt: dict[str, int] = {}
    for e in kube.events:
        if e.kind == "pods" and CHECKPOINT_ANNOTATION in e.obj["metadata"]["annotations"]:
            pod_ckpt.setdefault(owner_job(e.obj), e.rv)
    resumed = {}
    for j in ("train-a", "train-b"):
        ev = job_events(kube, j)
        s_rv = first_rv(ev, lambda o: o["spec"]["suspend"] is True)
        assert s_rv is not None, f"{j} was never suspended"
        r_rv = first_rv([(rv, o) for rv, o in ev if rv > s_rv], lambda o: o["spec"]["suspend"] is False)
        assert r_rv is not None, f"{j} was never resumed"
        assert pod_ckpt[j] < s_rv, f"{j}: the checkpoint annotation must come before the suspend"
        resumed[j] = r_rv
        assert j in world.checkpoints and world.resumed.get(j) == world.checkpoints[j], \
            f"{j} wrote a checkpoint before it was held, and its new pod resumed from it"
    assert resumed["train-a"] < resumed["train-b"], "resumed in the recorded queue order"
    assert all(kube.jobs[("ml", j)]["spec"]["suspend"] is False for j in ("train-a", "train-b"))
    return pod_ckpt, resumed


def reservation_lifted(kube: FakeKube) -> None:
    """Uncordoned, except the node an admin had cordoned; the burst node never touched."""
    for n in ONPREM:
        node = kube.nodes[n]
        assert not node["spec"].get("unschedulable"), f"{n} still cordoned"
        assert not {RESERVATION_ANNOTATION, RESERVATION_CORDON_ANNOTATION} & set(node["metadata"]["annotations"])
    assert kube.nodes["gpu04"]["spec"]["unschedulable"] is True
    assert RESERVATION_ANNOTATION not in kube.nodes["gpu04"]["metadata"]["annotations"]
    assert not any(e.kind == "nodes" and e.obj["metadata"]["name"] == "b-1" and e.type == "MODIFIED"
                   for e in kube.events), "the burst node is never touched"


@pytest.mark.parametrize("watch", [True, False], ids=["watch", "list"])
def test_k8s_grand_challenge(kube: FakeKube, tmp_path: Path, watch: bool) -> None:
    untouched_uids: set[str] = set()
    with challenge_run(kube, tmp_path, f"Kubernetes grand challenge (real client, stand-in API server, "
                                       f"{'watch' if watch else 'list'})", watch=watch) as run:
        untouched_uids = {p["metadata"]["uid"] for p in kube.pods_of_job("ml", "cloudy")}
        g = run.to_the_end()
        world, notes, cid, errors, seen_phases = run.world, run.notes, run.cid, run.errors, run.phases

        # ---- the challenge ----
        assert g.state is C.DONE, (g.state, g.last_error, errors)
        assert errors == []
        assert seen_phases == ["notified", "draining", "preempting", "running", "restoring", "done"]
        assert [p.job_id for p in g.preempted_jobs] == ["ml/job/train-a", "ml/job/train-b"], "queue order"
        assert [p.priority for p in g.preempted_jobs] == [100, 0]
        assert all(p.restored and p.released_at is not None for p in g.preempted_jobs)

        # ---- notices: the owners of jobs at risk, not carol (her job ends before the start) ----
        assert any("ml/job/train-a" in t for t in notes.to("alice"))
        assert any("ml/job/train-b" in t for t in notes.to("bob"))
        assert notes.to("carol") == [] and notes.to("dave") == [] and notes.to("erin") == []
        assert any("2 job(s) of 2 user(s)" in t for t in notes.to("all"))

        # ---- checkpoint annotation before suspend, suspend, then resume in recorded order ----
        pod_ckpt, _ = checkpointed_before_suspend_and_resumed(kube, world)
        prio = {j: int(kube.jobs[("ml", j)]["metadata"]["annotations"][RESTORE_PRIORITY_ANNOTATION])
                for j in ("train-a", "train-b")}
        assert prio["train-a"] > prio["train-b"] > 100, "restore priorities above all waiting work, in order"
        assert {n for j in ("train-a", "train-b") for _, n in world.started[j]} <= set(ONPREM)

        # ---- the challenge Job: made with the reservation's nodes, and it ran there ----
        name = reservation_name(cid)
        assert g.challenge_job_id == f"default/job/{name}"
        cj = kube.jobs[("default", name)]
        assert cj["metadata"]["labels"][CHALLENGE_LABEL] == cid
        assert cj["spec"]["activeDeadlineSeconds"] == int(DURATION)
        tspec = cj["spec"]["template"]["spec"]
        (term,) = tspec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"]
        assert term["matchFields"][0]["values"] == list(ONPREM), "the reserved nodes, not the admin-cordoned one"
        assert any(t["key"] == UNSCHEDULABLE for t in tspec["tolerations"])
        ran_on = [n for _, n in world.started[name]]
        assert len(ran_on) == 2 and set(ran_on) <= set(ONPREM)
        assert [c["type"] for c in cj["status"]["conditions"]] == ["Complete"]
        # while it ran, the reservation's nodes were cordoned, the burst node never
        assert world.cordoned_during_challenge == {"gpu01": True, "gpu02": True, "gpu03": True, "gpu04": True,
                                                   "b-1": False}

        # ---- at the end: uncordoned, except the node an admin had cordoned ----
        reservation_lifted(kube)

        # ---- jobs that were not preempted: untouched ----
        for j in ("short", "cloudy", "waiting"):
            assert all(o["spec"]["suspend"] is False for _, o in job_events(kube, j)), f"{j} was suspended"
            assert j not in pod_ckpt, f"{j} was asked to checkpoint"
            assert RESTORE_PRIORITY_ANNOTATION not in kube.jobs[("ml", j)]["metadata"]["annotations"]
        assert [c["reason"] for c in kube.jobs[("ml", "short")]["status"]["conditions"]] == ["DeadlineExceeded"]
        # the cordon did not stop it: it ran on its cordoned node until its own deadline
        cordon_rv = next(e.rv for e in kube.events if e.kind == "nodes" and e.obj["metadata"]["name"] == "gpu03"
                         and e.obj["spec"].get("unschedulable"))
        ended_rv = first_rv(job_events(kube, "short"), lambda o: o["status"].get("conditions"))
        assert ended_rv is not None and cordon_rv < ended_rv, "short ended after the drain window opened"
        assert {p["metadata"]["uid"] for p in kube.pods_of_job("ml", "cloudy")} == untouched_uids
        assert all(p["status"]["phase"] == "Running" for p in kube.pods_of_job("ml", "cloudy"))

        print(f"[e2e] start signal to challenge running: {g.entered_at(C.RUNNING) - g.entered_at(C.PREEMPTING):.2f}s;"
              f" challenge end to all released: "
              f"{max(p.released_at or 0 for p in g.preempted_jobs) - (g.entered_at(C.RESTORING) or 0):.2f}s")
        run.tl.mark("checked")


def test_k8s_grand_challenge_whose_job_is_refused_gives_everything_back(kube: FakeKube, tmp_path: Path) -> None:
    """The API server refuses the challenge's Job (422: no restartPolicy): the challenge moves to
    restoring and ends failed, every preempted Job is resumed in order, the reservation lifted,
    and the admins are told why."""
    bad = MANIFEST.replace("      restartPolicy: Never\n", "")
    with challenge_run(kube, tmp_path, "Kubernetes grand challenge, job refused", manifest=bad) as run:
        g = run.to_the_end()
        assert g.state is C.FAILED and g.ending is ChallengeEnding.FAILED
        assert "restartPolicy" in g.last_error and "HTTP 422" in g.last_error
        assert run.phases == ["notified", "draining", "preempting", "restoring", "failed"]
        assert [p.job_id for p in g.preempted_jobs] == ["ml/job/train-a", "ml/job/train-b"]
        assert all(p.restored for p in g.preempted_jobs)
        assert not any(ns == "default" for ns, _ in kube.jobs), "no challenge Job was made"
        checkpointed_before_suspend_and_resumed(kube, run.world)
        reservation_lifted(kube)
        assert any("failed to start" in t and "restartPolicy" in t for t in run.notes.to("admins"))


class Crash(BaseException):
    """Stands for SIGKILL at a crash point: nothing in burst catches it."""


# Two runs cover every crash point: a crash after the preempted set is recorded loses the
# signals (by design: never twice), so the signal-and-hold window needs a run of its own.
CRASH_RUNS = [("between-signal-and-hold", "after-hold", "after-submit"), ("after-preempted-recorded", "mid-release")]


def test_crash_runs_cover_every_crash_point() -> None:
    assert sorted(p for run in CRASH_RUNS for p in run) == sorted(GRAND_CHALLENGE_POINTS)


@pytest.mark.parametrize("points", CRASH_RUNS, ids=["+".join(r) for r in CRASH_RUNS])
def test_k8s_grand_challenge_survives_restarts_at_crash_points(
    kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, points: tuple[str, ...]
) -> None:
    """The controller dies once at each of ``points`` (burst/faults.py) and a new one (new
    KubernetesQueue, store reopened from the database) takes over. The challenge still completes,
    and on the API server: each preempted Job was asked to checkpoint at most once (not at all
    when the crash fell between recording and signalling), suspended once, resumed once and given
    its restore priority once (three Job PATCHes each); the challenge Job was made once; the
    reservation was lifted."""
    fired: list[str] = []

    def crash_point(name: str) -> None:
        if name in points and name not in fired:
            fired.append(name)
            raise Crash(name)

    monkeypatch.setattr(gcmod, "crash_point", crash_point)
    url = f"sqlite:///{tmp_path / 'burst.db'}"
    with challenge_run(kube, tmp_path, f"Kubernetes grand challenge, restarts at {', '.join(points)}") as run:
        run.store.close()
        t_end = time.monotonic() + START_IN + DURATION
        queue: KubernetesQueue | None = None
        store: SqlStore | None = None
        g: GrandChallenge | None = None
        restarts = 0
        try:
            while time.monotonic() < t_end:
                if queue is None:  # a new process: nothing but the store and the cluster survive
                    store = SqlStore.from_url(url)
                    queue = KubernetesQueue(K8sSettings(host=kube.url, timeout_s=5))
                    ctl = Controller(cluster=CLUSTER, queue=queue, providers={}, store=store, offers=[],
                                     policy=POLICY, challenge_queue=queue, challenge_settings=SETTINGS,
                                     notifier=run.notes)
                assert store is not None
                now = time.time()
                run.world.step(now)
                try:
                    run.after(ctl.tick(now))
                except Crash as c:
                    run.tl.mark(f"crash at {c}; restart")
                    restarts += 1
                    queue.close()
                    store.close()
                    queue = store = None
                    continue
                g = store.get_challenge(run.cid)
                if g is not None and g.state is C.DONE and all(run.world.started.get(j) for j in ("train-a", "train-b")):
                    break
                time.sleep(0.2)
        finally:
            run.tl.report()
            if queue is not None:
                queue.close()
            if store is not None:
                store.close()
        assert sorted(fired) == sorted(points) and restarts == len(points)
        assert g is not None and g.state is C.DONE, g
        assert all(p.restored for p in g.preempted_jobs)
        assert [p.job_id for p in g.preempted_jobs] == ["ml/job/train-a", "ml/job/train-b"]
        for j in ("train-a", "train-b"):
            assert kube.counts[("PATCH", f"/apis/batch/v1/namespaces/ml/jobs/{j}")] == 3, \
                f"{j}: suspend, resume, restore priority, each once"
            ckpt = [e for e in kube.events if e.kind == "pods" and owner_job(e.obj) == j
                    and CHECKPOINT_ANNOTATION in e.obj["metadata"]["annotations"] and e.type == "MODIFIED"]
            asked = len({e.obj["metadata"]["annotations"][CHECKPOINT_ANNOTATION] for e in ckpt})
            assert asked == (0 if "after-preempted-recorded" in points else 1), f"{j}: asked to checkpoint {asked}x"
        name = reservation_name(run.cid)
        assert [e.type for e in kube.events if e.kind == "jobs" and e.obj["metadata"]["name"] == name][0] == "ADDED"
        assert sum(e.type == "ADDED" for e in kube.events if e.kind == "jobs" and e.obj["metadata"]["name"] == name) == 1
        assert len({e.obj["metadata"]["name"] for e in kube.events if e.kind == "pods" and e.type == "ADDED"
                    and owner_job(e.obj) == name}) == 2, "the challenge's pods were made once"
        if "after-preempted-recorded" not in points:
            checkpointed_before_suspend_and_resumed(kube, run.world)
        reservation_lifted(kube)
