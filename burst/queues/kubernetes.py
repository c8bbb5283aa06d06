"""Kubernetes as burst's on-prem queue, through the official ``kubernetes`` client (lazy import).

Reading: pods, nodes and batch/v1 Jobs (see *Watch* below for how they are fetched):

* **Pending work** is a pod that the scheduler could not place (condition ``PodScheduled`` is
  ``False`` with reason ``Unschedulable``) and that requests ``nvidia.com/gpu``. Pods are grouped
  into one :class:`~burst.domain.Job` per gang, by the first of: the coscheduling PodGroup
  (label or annotation ``scheduling.x-k8s.io/pod-group``), the Volcano group (annotation
  ``scheduling.k8s.io/group-name``), the JobSet (label ``jobset.sigs.k8s.io/jobset-name``), the
  owning batch/v1 Job; otherwise the pod alone. Job ids are ``<namespace>/<kind>/<name>`` with kind
  ``podgroup``, ``jobset``, ``job`` or ``pod``. A gang of n pods is ``nodes=n`` with
  ``gpus_per_node`` = the largest pod's GPUs. Pending pods the scheduler has not judged yet are
  left out (they are not waiting for capacity). Suspended Jobs that ask for GPUs are reported as
  ``JobState.HELD`` (what ``hold`` leaves behind).
* **Running work** is every non-terminal pod bound to a node (``spec.nodeName``), grouped the same
  way; ``start_time`` is the earliest ``status.startTime``.
* **Nodes** have ``allocatable[nvidia.com/gpu]`` GPUs; used GPUs are summed from the requests of
  non-terminal pods bound to the node (not from any node state). A node is schedulable when it is
  Ready and not cordoned. Burst nodes carry the label ``burst.dev/instance-id`` (-> ``instance_id``)
  and the taint ``burst.dev/cloud=true:NoSchedule`` (which keeps other work off; it does not make
  the node unschedulable for opted-in pods).
* **Opt-in**: a pod (or its Job) may burst when it has the label or annotation
  ``burst.dev/allow-cloud=true`` (key and value configurable).

Writing: ``drain_node`` cordons (``spec.unschedulable=true``) and evicts the node's pods through
the Eviction API (DaemonSet and mirror pods are left; a 429 from a PodDisruptionBudget leaves the
pod for the next call), ``undrain_node`` uncordons, ``remove_node`` deletes the Node (404 is
success). Preemption: ``hold`` suspends the owning batch/v1 Job (``spec.suspend=true``: the Job
controller deletes its pods and keeps the Job) or evicts bare pods; ``release`` unsuspends;
``checkpoint`` annotates the pods with ``burst.dev/checkpoint-requested-at`` (Kubernetes has no
signal API: workloads watch the annotation through the downward API or the API server, and get
SIGTERM with their grace period when they are held).

Watch (``watch: true``, the default), as client-go informers do it: the first ``snapshot`` LISTs
pods, nodes and Jobs (per namespace when ``namespaces`` is set) and remembers each LIST's
``resourceVersion``; then one daemon thread per resource WATCHes from it and applies
``ADDED``/``MODIFIED``/``DELETED``/``BOOKMARK`` events to an in-memory cache. Later snapshots are
built from the caches without a request. ``410 Gone`` (history compacted) makes that watcher LIST
again; a dropped or failed watch is resumed from the last version seen, after a capped
exponential backoff. Consistency:

* The caches are eventually consistent, as the controller (level-triggered) expects: a change
  reaches a snapshot once its event has arrived, typically milliseconds.
* Read-your-writes for burst's own writes: the object a PATCH returns (cordon, uncordon,
  annotate, suspend, resume) goes into the cache at once, unless the cache already has a newer
  version; for an eviction, a node deletion or a Job suspension (whose pods the Job controller
  deletes) the next snapshot waits up to ``watch_settle_s`` for the watch to show that object
  changed, then goes on with what it has.
* Never silently stale: if a watcher has been failing for more than ``watch_stale_after_s``,
  ``snapshot`` reads by LIST instead (and raises ``QueueUnavailable`` if that fails too).
* Objects from events are parsed as strictly as from a LIST. A malformed one stays in the cache
  with its error (counted and logged by the watcher, which carries on), and every snapshot raises
  that ``QueueParseError``, naming the object, until the object is fixed or deleted: the same as a
  LIST that returns it.

The writes themselves, and the reads that pick what to write to (the pods on a node to drain, the
pods of a job to hold), always go to the API server. ``close()`` stops the watchers (the daemon
calls it at shutdown); ``watch: false`` LISTs everything on every snapshot instead.

Errors: a timeout, a refused connection or a 5xx becomes :class:`~burst.errors.QueueUnavailable`;
an object that cannot be read becomes :class:`~burst.errors.QueueParseError` naming the object
and field; other API errors become :class:`~burst.errors.QueueError`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from burst.domain import GANG_HOLD_LABEL, Job, JobState, Node, QueueSnapshot
from burst.errors import QueueError, QueueParseError, QueueUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")
Obj = Mapping[str, Any]

POD_GROUP_KEYS = ("scheduling.x-k8s.io/pod-group", "pod-group.scheduling.sigs.k8s.io")
VOLCANO_GROUP_KEY = "scheduling.k8s.io/group-name"
JOBSET_KEY = "jobset.sigs.k8s.io/jobset-name"
CHECKPOINT_ANNOTATION = "burst.dev/checkpoint-requested-at"
DRAIN_REASON_ANNOTATION = "burst.dev/drain-reason"
GANG_TAINT_KEY = "burst.dev/gang"  # a gang member registers with it (builtin:k8s user data)


class K8sSettings(BaseModel):
    """How to reach the API server and how burst reads the cluster.

    Connection, by the first that is set: ``host`` (+ ``token_file``/``ca_file``; tests use
    ``http://127.0.0.1:PORT``), ``in_cluster``, else the kubeconfig (``kubeconfig``/``context``, or
    the client's default ``~/.kube/config``). Secrets are read from files, never held in config.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    verify_ssl: bool = True
    in_cluster: bool = False
    kubeconfig: Path | None = None
    context: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    namespaces: list[str] = Field(default_factory=list)  # empty: all namespaces
    gpu_resource: str = "nvidia.com/gpu"
    opt_in_key: str = "burst.dev/allow-cloud"
    opt_in_value: str = "true"
    instance_id_label: str = "burst.dev/instance-id"
    cloud_taint_key: str = "burst.dev/cloud"
    gpu_model_label: str = "nvidia.com/gpu.product"
    owner_label: str = "burst.dev/owner"
    team_label: str = "burst.dev/team"  # default team: the namespace
    eviction_grace_s: int | None = None  # None: each pod's own terminationGracePeriodSeconds
    # Watch (see the module docstring). false: one LIST of each resource per snapshot.
    watch: bool = True
    # A watcher failing for longer than this is not trusted: snapshot reads by LIST instead.
    watch_stale_after_s: float = Field(default=60.0, gt=0)
    # Server-side timeoutSeconds of one watch request; the watcher then resumes where it was.
    # client-go picks 5-10 min; shorter costs a request, never events.
    watch_timeout_s: int = Field(default=300, ge=1)
    # After burst's own eviction, node deletion or Job suspension, how long the next snapshot
    # waits for the watch to show it (read-your-writes); 0: do not wait.
    watch_settle_s: float = Field(default=2.0, ge=0)
    # A watch that delivers nothing (no event, no bookmark) for this long is cut and resumed:
    # the API server sends a bookmark about every minute, so silence means a half-open
    # connection, which would otherwise look healthy until watch_timeout_s.
    watch_silence_s: float = Field(default=120.0, gt=0)


# --------------------------------------------------------------------------------------------
# Pure parsing: JSON objects (as the API serves them) -> domain types
# --------------------------------------------------------------------------------------------


def parse_quantity(q: Any, where: str) -> float:
    """A Kubernetes quantity (``"8"``, ``8``, ``"500m"``, ``"1Ki"``) as a number."""
    if isinstance(q, bool):
        raise QueueParseError(where, f"expected a quantity, got {q!r}")
    if isinstance(q, int | float):
        return float(q)
    if not isinstance(q, str):
        raise QueueParseError(where, f"expected a quantity, got {q!r}")
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*", q)
    suffixes = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    if not m or m.group(2) not in suffixes:
        raise QueueParseError(where, f"not a quantity: {q!r}")
    return float(m.group(1)) * suffixes[m.group(2)]


def parse_time(v: Any, where: str) -> float:
    """RFC 3339 (``2024-05-01T12:00:00Z``) -> POSIX seconds."""
    if not isinstance(v, str) or not v:
        raise QueueParseError(where, f"expected an RFC 3339 time, got {v!r}")
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise QueueParseError(where, f"not an RFC 3339 time: {v!r}") from None


def _obj(v: Any, where: str) -> Obj:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise QueueParseError(where, f"expected an object, got {type(v).__name__} {v!r}")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise QueueParseError(where, f"expected a list, got {type(v).__name__} {v!r}")
    return v


def _text(v: Any, where: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise QueueParseError(where, f"expected text, got {type(v).__name__} {v!r}")
    return v


def _strmap(v: Any, where: str) -> dict[str, str]:
    m = _obj(v, where)
    for k, x in m.items():
        if not isinstance(x, str):
            raise QueueParseError(f"{where}.{k}", f"expected text, got {x!r}")
    return dict(m)


def pod_gpus(spec: Obj, gpu: str, where: str) -> int:
    """GPUs a pod asks for: sum over containers (request, else limit), at least the largest init
    container's (the scheduler's effective request)."""

    def one(c: Any, w: str) -> float:
        res = _obj(_obj(c, w).get("resources"), f"{w}.resources")
        req = _obj(res.get("requests"), f"{w}.resources.requests")
        lim = _obj(res.get("limits"), f"{w}.resources.limits")
        if gpu in req:
            return parse_quantity(req[gpu], f"{w}.resources.requests[{gpu}]")
        if gpu in lim:
            return parse_quantity(lim[gpu], f"{w}.resources.limits[{gpu}]")
        return 0.0

    main = sum(one(c, f"{where}.containers[{i}]") for i, c in enumerate(_list(spec.get("containers"),
                                                                              f"{where}.containers")))
    init = max((one(c, f"{where}.initContainers[{i}]")
                for i, c in enumerate(_list(spec.get("initContainers"), f"{where}.initContainers"))),
               default=0.0)
    return int(max(main, init))


@dataclass(slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]
    owner_kind: str
    owner_name: str
    gpus: int
    phase: str
    node_name: str
    unschedulable: bool
    message: str
    created: float
    started: float | None
    priority: int
    image: str
    node_selector: dict[str, str]
    deleting: bool

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def parse_pod(p: Any, gpu: str, where: str = "pod") -> PodInfo:
    p = _obj(p, where)
    meta = _obj(p.get("metadata"), f"{where}.metadata")
    ns = _text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = _text(meta.get("name"), f"{where}.metadata.name")
    if not name:
        raise QueueParseError(f"{where}.metadata.name", "missing")
    where = f"pod {ns}/{name}"
    spec = _obj(p.get("spec"), f"{where}.spec")
    status = _obj(p.get("status"), f"{where}.status")
    owner_kind = owner_name = ""
    for i, o in enumerate(_list(meta.get("ownerReferences"), f"{where}.metadata.ownerReferences")):
        o = _obj(o, f"{where}.metadata.ownerReferences[{i}]")
        if o.get("controller") or not owner_kind:
            owner_kind = _text(o.get("kind"), f"{where}.metadata.ownerReferences[{i}].kind")
            owner_name = _text(o.get("name"), f"{where}.metadata.ownerReferences[{i}].name")
    unsched, message = False, ""
    for i, c in enumerate(_list(status.get("conditions"), f"{where}.status.conditions")):
        c = _obj(c, f"{where}.status.conditions[{i}]")
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            unsched = True
            message = _text(c.get("message"), f"{where}.status.conditions[{i}].message")
    started = status.get("startTime")
    prio = spec.get("priority", 0)
    if prio is None:
        prio = 0
    if isinstance(prio, bool) or not isinstance(prio, int):
        raise QueueParseError(f"{where}.spec.priority", f"expected an integer, got {prio!r}")
    containers = _list(spec.get("containers"), f"{where}.spec.containers")
    image = _text(_obj(containers[0], f"{where}.spec.containers[0]").get("image"),
                  f"{where}.spec.containers[0].image") if containers else ""
    return PodInfo(
        namespace=ns,
        name=name,
        uid=_text(meta.get("uid"), f"{where}.metadata.uid"),
        labels=_strmap(meta.get("labels"), f"{where}.metadata.labels"),
        annotations=_strmap(meta.get("annotations"), f"{where}.metadata.annotations"),
        owner_kind=owner_kind,
        owner_name=owner_name,
        gpus=pod_gpus(spec, gpu, f"{where}.spec"),
        phase=_text(status.get("phase"), f"{where}.status.phase"),
        node_name=_text(spec.get("nodeName"), f"{where}.spec.nodeName"),
        unschedulable=unsched,
        message=message,
        created=parse_time(meta.get("creationTimestamp"), f"{where}.metadata.creationTimestamp"),
        started=parse_time(started, f"{where}.status.startTime") if started else None,
        priority=prio,
        image=image,
        node_selector=_strmap(spec.get("nodeSelector"), f"{where}.spec.nodeSelector"),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def gang_key(pod: PodInfo) -> tuple[str, str]:
    """(kind, name) of the unit the pod belongs to; see the module docstring for the order."""
    for k in POD_GROUP_KEYS:
        v = pod.labels.get(k) or pod.annotations.get(k)
        if v:
            return "podgroup", v
    v = pod.annotations.get(VOLCANO_GROUP_KEY) or pod.labels.get(VOLCANO_GROUP_KEY)
    if v:
        return "podgroup", v
    v = pod.labels.get(JOBSET_KEY)
    if v:
        return "jobset", v
    if pod.owner_kind == "Job":
        return "job", pod.owner_name
    return "pod", pod.name


def job_id(namespace: str, kind: str, name: str) -> str:
    return f"{namespace}/{kind}/{name}"


def split_job_id(jid: str) -> tuple[str, str, str]:
    parts = jid.split("/")
    if len(parts) != 3 or not all(parts) or parts[1] not in ("podgroup", "jobset", "job", "pod"):
        raise QueueError(f"not a Kubernetes job id (namespace/kind/name): {jid!r}")
    return parts[0], parts[1], parts[2]


def _opted_in(labels: Mapping[str, str], annotations: Mapping[str, str], s: K8sSettings) -> bool:
    return labels.get(s.opt_in_key) == s.opt_in_value or annotations.get(s.opt_in_key) == s.opt_in_value


def _group_job(jid: str, pods: Sequence[PodInfo], state: JobState, s: K8sSettings,
               submitted: float | None = None) -> Job:
    first = min(pods, key=lambda p: (p.created, p.name))
    per_pod = max(p.gpus for p in pods)
    n = len(pods)
    starts = [p.started for p in pods if p.started is not None]
    meta_labels = {**first.labels}
    labels = {"namespace": first.namespace, "kind": jid.split("/")[1], "pods": str(n)}
    if first.message:
        labels["message"] = first.message
    return Job(
        id=jid,
        gpus=sum(p.gpus for p in pods),
        submit_time=min(first.created, submitted) if submitted is not None else first.created,
        state=state,
        owner=meta_labels.get(s.owner_label, ""),
        team=meta_labels.get(s.team_label, first.namespace),
        gpus_per_node=per_pod if n > 1 else 0,
        nodes=n,
        labels=MappingProxyType(labels),
        image=first.image,
        may_burst=any(_opted_in(p.labels, p.annotations, s) for p in pods),
        gpu_model=first.node_selector.get(s.gpu_model_label, ""),
        start_time=min(starts) if starts else (first.created if state is JobState.RUNNING else None),
        node_names=tuple(sorted({p.node_name for p in pods if p.node_name})),
        reason="Unschedulable" if state is JobState.PENDING else "",
        priority=max(p.priority for p in pods),
    )


def build_jobs(
    pods: Sequence[PodInfo], s: K8sSettings, submitted: Mapping[str, float] | None = None
) -> tuple[list[Job], list[Job]]:
    """Pods -> (pending, running) jobs. Pure. ``submitted`` maps job ids to their batch/v1 Job's
    creation time: a Job's wait starts when it was created, not when its (re)created pods were."""
    submitted = submitted or {}
    pend: dict[str, list[PodInfo]] = {}
    run: dict[str, list[PodInfo]] = {}
    for p in pods:
        if p.terminal or p.gpus <= 0:
            continue
        kind, name = gang_key(p)
        jid = job_id(p.namespace, kind, name)
        if p.node_name:
            run.setdefault(jid, []).append(p)
        elif p.phase == "Pending" and p.unschedulable and not p.deleting:
            pend.setdefault(jid, []).append(p)
    pending = [_group_job(j, ps, JobState.PENDING, s, submitted.get(j)) for j, ps in pend.items()]
    running = [_group_job(j, ps, JobState.RUNNING, s, submitted.get(j)) for j, ps in run.items()]
    pending.sort(key=lambda j: (-j.priority, j.submit_time, j.id))
    running.sort(key=lambda j: (j.start_time or 0.0, j.id))
    return pending, running


def parse_suspended_job(j: Any, s: K8sSettings, where: str = "job") -> Job | None:
    """A suspended batch/v1 Job that asks for GPUs -> a HELD job; else None."""
    j = _obj(j, where)
    meta = _obj(j.get("metadata"), f"{where}.metadata")
    ns = _text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = _text(meta.get("name"), f"{where}.metadata.name")
    where = f"job {ns}/{name}"
    spec = _obj(j.get("spec"), f"{where}.spec")
    if spec.get("suspend") is not True:
        return None
    tmpl = _obj(spec.get("template"), f"{where}.spec.template")
    tspec = _obj(tmpl.get("spec"), f"{where}.spec.template.spec")
    tmeta = _obj(tmpl.get("metadata"), f"{where}.spec.template.metadata")
    gpus = pod_gpus(tspec, s.gpu_resource, f"{where}.spec.template.spec")
    if gpus <= 0:
        return None
    par = spec.get("parallelism", 1)
    if par is None:
        par = 1
    if isinstance(par, bool) or not isinstance(par, int) or par < 0:
        raise QueueParseError(f"{where}.spec.parallelism", f"expected a count, got {par!r}")
    par = max(1, par)
    labels = {**_strmap(meta.get("labels"), f"{where}.metadata.labels"),
              **_strmap(tmeta.get("labels"), f"{where}.spec.template.metadata.labels")}
    annotations = {**_strmap(meta.get("annotations"), f"{where}.metadata.annotations"),
                   **_strmap(tmeta.get("annotations"), f"{where}.spec.template.metadata.annotations")}
    containers = _list(tspec.get("containers"), f"{where}.spec.template.spec.containers")
    return Job(
        id=job_id(ns, "job", name),
        gpus=gpus * par,
        submit_time=parse_time(meta.get("creationTimestamp"), f"{where}.metadata.creationTimestamp"),
        state=JobState.HELD,
        owner=labels.get(s.owner_label, ""),
        team=labels.get(s.team_label, ns),
        gpus_per_node=gpus if par > 1 else 0,
        nodes=par,
        labels=MappingProxyType({"namespace": ns, "kind": "job", "pods": str(par)}),
        image=_text(_obj(containers[0], f"{where}.containers[0]").get("image"), f"{where}.image")
        if containers else "",
        may_burst=_opted_in(labels, annotations, s),
        reason="Suspended",
    )


def build_nodes(nodes: Iterable[Any], pods: Sequence[PodInfo], s: K8sSettings) -> list[Node]:
    """Node objects + pods -> nodes with GPU capacity and GPU use summed from bound pods. Pure."""
    used: dict[str, int] = {}
    jobs_on: dict[str, set[str]] = {}
    for p in pods:
        if not p.node_name or p.terminal:
            continue
        used[p.node_name] = used.get(p.node_name, 0) + p.gpus
        if p.gpus > 0:
            kind, name = gang_key(p)
            jobs_on.setdefault(p.node_name, set()).add(job_id(p.namespace, kind, name))
    out: list[Node] = []
    for i, n in enumerate(nodes):
        n = _obj(n, f"nodes[{i}]")
        meta = _obj(n.get("metadata"), f"nodes[{i}].metadata")
        name = _text(meta.get("name"), f"nodes[{i}].metadata.name")
        if not name:
            raise QueueParseError(f"nodes[{i}].metadata.name", "missing")
        where = f"node {name}"
        spec = _obj(n.get("spec"), f"{where}.spec")
        status = _obj(n.get("status"), f"{where}.status")
        alloc = _obj(status.get("allocatable"), f"{where}.status.allocatable")
        gpus = int(parse_quantity(alloc.get(s.gpu_resource, "0"), f"{where}.status.allocatable[{s.gpu_resource}]"))
        labels = _strmap(meta.get("labels"), f"{where}.metadata.labels")
        ready = False
        for j, c in enumerate(_list(status.get("conditions"), f"{where}.status.conditions")):
            c = _obj(c, f"{where}.status.conditions[{j}]")
            if c.get("type") == "Ready":
                ready = c.get("status") == "True"
        taints = [_obj(t, f"{where}.spec.taints[{j}]") for j, t in enumerate(_list(spec.get("taints"),
                                                                                   f"{where}.spec.taints"))]
        cloud_taint = any(t.get("key") == s.cloud_taint_key for t in taints)
        gang_hold = next((str(t.get("value", "")) for t in taints if t.get("key") == GANG_TAINT_KEY), None)
        cordoned = bool(spec.get("unschedulable"))
        iid = labels.get(s.instance_id_label, "")
        node_labels = dict(labels)
        if cloud_taint or iid:
            node_labels["burst.dev/cloud"] = "true"
        if cordoned:
            node_labels["burst.dev/cordoned"] = "true"
        if gang_hold is not None:
            node_labels[GANG_HOLD_LABEL] = gang_hold
        out.append(
            Node(
                name=name,
                gpus=gpus,
                gpus_used=used.get(name, 0),
                gpu_model=labels.get(s.gpu_model_label, ""),
                schedulable=ready and not cordoned,
                ready=ready,
                instance_id=iid,
                labels=MappingProxyType(node_labels),
                running_jobs=len(jobs_on.get(name, ())),
            )
        )
    return out


def _items(doc: Any, what: str) -> list[Any]:
    d = _obj(doc, what)
    return _list(d.get("items"), f"{what}.items")


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What a snapshot needs from a batch/v1 Job: its id, creation time and, if suspended, the
    HELD job it stands for."""

    jid: str
    submitted: float
    held: Job | None


def parse_job(d: Any, s: K8sSettings, where: str = "job") -> JobInfo:
    held = parse_suspended_job(d, s, where)
    meta = _obj(_obj(d, where).get("metadata"), f"{where}.metadata")
    ns = _text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = _text(meta.get("name"), f"{where}.metadata.name")
    return JobInfo(job_id(ns, "job", name), parse_time(meta.get("creationTimestamp"),
                                                       f"job {ns}/{name}.metadata.creationTimestamp"), held)


def check_node(n: Any, s: K8sSettings, where: str = "node") -> Obj:
    """A Node object, checked as strictly as :func:`build_nodes` reads it; returned as is."""
    try:
        build_nodes([n], [], s)
    except QueueParseError as e:
        if e.where.startswith("nodes[0]"):  # unnamed: say where it came from
            raise QueueParseError(where + e.where.removeprefix("nodes[0]"), e.message) from None
        raise
    return _obj(n, where)


def assemble(pods: Sequence[PodInfo], node_docs: Sequence[Any], jobs: Sequence[JobInfo],
             s: K8sSettings) -> QueueSnapshot:
    """Parsed pods, Node objects and Jobs -> the snapshot. Pure."""
    held = [j.held for j in jobs if j.held is not None]
    submitted = {j.jid: j.submitted for j in jobs}
    pending, running = build_jobs(pods, s, submitted)
    nodes = build_nodes(node_docs, pods, s)
    return QueueSnapshot(pending=tuple(pending + held), running=tuple(running), nodes=tuple(nodes))


# --------------------------------------------------------------------------------------------
# API calls (module level: the watcher threads use them and must not hold the queue)
# --------------------------------------------------------------------------------------------


@dataclass
class _Apis:
    client: Any
    core: Any
    batch: Any
    exc: Any  # kubernetes.client.exceptions.ApiException
    v1eviction: Callable[..., Any]
    v1meta: Callable[..., Any]
    v1delete: Callable[..., Any]


def _call(apis: _Apis, s: K8sSettings, what: str, fn: Callable[..., T], *args: Any, ok_404: bool = False,
          **kw: Any) -> T | None:
    """One API call with the timeout; SDK and transport errors mapped onto burst's errors."""
    # a (connect, read) pair: the client ignores a lone float (it only honours a lone int)
    kw.setdefault("_request_timeout", (s.timeout_s, s.timeout_s))
    try:
        return fn(*args, **kw)
    except apis.exc as e:
        status = getattr(e, "status", 0) or 0
        if status == 404 and ok_404:
            return None
        msg = _api_message(e)
        if status == 0 or status >= 500:
            raise QueueUnavailable(f"kubernetes {what}: HTTP {status or 'error'}: {msg}") from None
        err = QueueError(f"kubernetes {what}: HTTP {status}: {msg}")
        err.status = status  # type: ignore[attr-defined]
        raise err from None
    except Exception as e:  # urllib3 timeouts, refused connections, TLS errors
        if _is_transport_error(e):
            raise QueueUnavailable(f"kubernetes {what}: {type(e).__name__}: {e}") from None
        raise


def _get_json(apis: _Apis, s: K8sSettings, what: str, fn: Callable[..., Any], *args: Any, ok_404: bool = False,
              **kw: Any) -> Any:
    """Like :func:`_call`, answering the JSON as the server sent it (None: 404 with ``ok_404``)."""
    resp = _call(apis, s, what, fn, *args, _preload_content=False, ok_404=ok_404, **kw)
    if resp is None:
        return None
    data: Any = getattr(resp, "data", resp)
    try:
        return json.loads(data)
    except (TypeError, ValueError) as e:
        raise QueueParseError(f"kubernetes {what}", f"answer is not JSON: {e}") from None


# --------------------------------------------------------------------------------------------
# Watch: one informer (LIST, then WATCH from its resourceVersion) per resource
# --------------------------------------------------------------------------------------------

# Reconnect backoff after a failed watch or LIST: capped exponential with jitter (client-go's
# reflector backs off 800 ms .. 30 s). We start lower because a dropped connection behind a load
# balancer is the common case and resuming from the last version is cheap; the cap keeps a dead
# API server from being hammered by every burst process.
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 30.0
# A watch the server ends sooner than this with no event counts as a failure (backoff), so a
# proxy that closes every watch at once cannot turn the watcher into a busy loop.
MIN_HEALTHY_WATCH_S = 0.2


@dataclass(frozen=True, slots=True)
class _Entry(Generic[P]):
    rv: str
    value: P | None
    error: QueueParseError | None


class _Gone(Exception):
    """410: the version the watcher resumes from is no longer in the server's history."""


class _Relist(Exception):
    """The watch stream said something the cache cannot apply; rebuild the cache from a LIST."""


def _key(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    ns, name = meta.get("namespace") or "", meta.get("name")
    if not isinstance(ns, str) or not isinstance(name, str) or not name:
        return None
    return f"{ns}/{name}" if ns else name


def _rv(obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) else ""


def _not_older(new: str, old: str) -> bool:
    """Whether version ``new`` is not older than ``old``. resourceVersions are opaque to clients,
    but every API server uses etcd's integer revision; if either is not an integer, trust the
    newcomer (events arrive in order; only a write's own answer can overtake them)."""
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True


class _Informer(Generic[P]):
    """A cache of one resource (one namespace, or all), kept current by LIST + WATCH.

    Thread-safety: the watcher thread writes, callers read; every access to the cache takes
    ``_cond``'s lock, and readers get copies (lists of parsed values, which are never mutated).
    Consistency: see the module docstring. The informer holds no reference to the queue, so a
    queue that is dropped without ``close()`` is collected and its finalizer stops the thread.
    """

    def __init__(self, what: str, kind: str, s: K8sSettings, apis: _Apis,
                 list_call: Callable[..., Any], watch_call: Callable[..., Any], args: tuple[Any, ...],
                 parse: Callable[[Any, str], P]) -> None:
        self.what = what  # "pods in ml", "nodes", ...
        self.kind = kind  # "PodList" ...: names LIST items in errors, as the LIST path does
        self._s = s
        self._apis = apis
        self._list_call = list_call
        self._watch_call = watch_call
        self._args = args
        self._parse = parse
        self._cond = threading.Condition()
        self._entries: dict[str, _Entry[P]] = {}
        self._stray: QueueParseError | None = None  # an object without a usable name
        self._rv = ""  # where the watch resumes
        self._expect: dict[str, str] = {}  # key -> version a write of ours is expected to change
        self._failing_since: float | None = None  # monotonic
        self._relist_needed = False
        self._stop = threading.Event()
        self._resp: Any = None  # the open watch response, shut down by stop()
        self._thread: threading.Thread | None = None
        # counters (watch_stats)
        self.events = self.relists = self.reconnects = self.failures = self.parse_errors = 0
        self.last_error = ""

    # ---- the cache ---------------------------------------------------------------------------

    def _entry(self, obj: Any, where: str) -> _Entry[P]:
        try:
            return _Entry(_rv(obj), self._parse(obj, where), None)
        except QueueParseError as e:
            err = e
        except Exception as e:  # noqa: BLE001 - a gap in the parser must not kill the watcher
            err = QueueParseError(where, f"unreadable: {type(e).__name__}: {e}")
        with self._cond:
            self.parse_errors += 1
        log.warning("kubernetes watch %s: %s", self.what, err)
        return _Entry(_rv(obj), None, err)

    def sync(self) -> None:
        """LIST and replace the cache (the initial sync, and after 410). Raises QueueError types."""
        doc = _get_json(self._apis, self._s, f"list {self.what}", self._list_call, *self._args)
        items = _items(doc, self.kind)
        rv = _rv(doc)
        if not rv:
            raise QueueParseError(f"kubernetes list {self.what}", "the answer has no metadata.resourceVersion")
        entries: dict[str, _Entry[P]] = {}
        stray: QueueParseError | None = None
        for i, item in enumerate(items):
            k = _key(item)
            e = self._entry(item, f"{self.kind}.items[{i}]")
            if k is None:
                stray = stray or e.error or QueueParseError(f"{self.kind}.items[{i}].metadata.name", "missing")
            else:
                entries[k] = e
        with self._cond:
            self._entries, self._stray, self._rv = entries, stray, rv
            self._failing_since = None
            self._relist_needed = False
            self._cond.notify_all()

    def values(self) -> list[P]:
        """The cached objects, parsed, in key order (as a LIST returns them). Raises the first
        object's QueueParseError while any cached object is malformed."""
        with self._cond:
            if self._stray is not None:
                raise self._stray
            out: list[P] = []
            for k in sorted(self._entries):
                e = self._entries[k]
                if e.error is not None:
                    raise e.error
                assert e.value is not None
                out.append(e.value)
            return out

    def version_of(self, key: str) -> str | None:
        with self._cond:
            e = self._entries.get(key)
            return e.rv if e is not None else None

    def remember(self, obj: Any) -> None:
        """Put the object a write of ours returned into the cache, unless the cache has a newer
        version (read-your-writes; the watch event for it arrives later and changes nothing)."""
        k = _key(obj)
        if k is None:
            return
        e = self._entry(obj, f"{self.what} write answer")
        with self._cond:
            old = self._entries.get(k)
            # Only over an entry the cache holds: a write changes an object that exists, so a
            # missing entry means the watch already delivered its deletion (a reclaimed node
            # cordoned as it went); inserting the answer would bring it back as a ghost.
            if old is not None and _not_older(e.rv, old.rv):
                self._entries[k] = e
                self._cond.notify_all()

    def expect(self, key: str, version: str | None) -> None:
        """A write of ours will change (or delete) ``key``, now at ``version``: the next
        :meth:`settle` waits for that."""
        if version is None:
            return
        with self._cond:
            self._expect[key] = version

    def settle(self, deadline: float) -> None:
        """Wait until every expected change has been seen, the watcher fails, or ``deadline``
        (monotonic) passes; then forget the expectations (the cache is eventually consistent)."""
        with self._cond:
            while True:
                self._expect = {k: v for k, v in self._expect.items()
                                if (e := self._entries.get(k)) is not None and e.rv == v}
                left = deadline - time.monotonic()
                if not self._expect or left <= 0 or self._failing_since is not None:
                    if self._expect:
                        log.debug("kubernetes watch %s: not seen yet: %s", self.what, sorted(self._expect))
                    self._expect.clear()
                    return
                self._cond.wait(left)

    def failing_for(self, now: float) -> float:
        """Seconds the watcher has been failing (0: healthy). A dead thread is failing."""
        with self._cond:
            if self._failing_since is None and self._thread is not None and not self._thread.is_alive() \
                    and not self._stop.is_set():
                self._failing_since = now
            return now - self._failing_since if self._failing_since is not None else 0.0

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"resource_version": self._rv, "objects": len(self._entries), "events": self.events,
                    "relists": self.relists, "reconnects": self.reconnects, "failures": self.failures,
                    "parse_errors": self.parse_errors, "last_error": self.last_error,
                    "failing": self._failing_since is not None,
                    "alive": self._thread is not None and self._thread.is_alive()}

    # ---- the watcher thread -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"kube-watch {self.what}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and cut its open watch (returns at once; see :meth:`join`)."""
        self._stop.set()
        with self._cond:
            resp = self._resp
            self._cond.notify_all()
        _shutdown(resp)

    def join(self, timeout: float) -> None:
        # the finalizer may run on a watcher thread (garbage collection happens anywhere)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = gone = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                if self._relist_needed:
                    self.relists += 1
                    self.sync()
                n = self._watch_once()
                if self._stop.is_set():
                    break
                if n == 0 and time.monotonic() - t0 < MIN_HEALTHY_WATCH_S:
                    raise QueueUnavailable(f"kubernetes watch {self.what}: the server ended it at once")
                self._mark_healthy()  # a clean end after a while (timeoutSeconds) is healthy too
                failures = gone = 0
                continue  # a clean end (timeoutSeconds): resume at once
            except (_Gone, _Relist) as e:
                with self._cond:
                    self._relist_needed = True
                    self.last_error = str(e)
                log.info("kubernetes watch %s: %s; listing again", self.what, e)
                gone += 1
                if gone == 1:
                    continue  # relist at once; a second 410 in a row backs off
                failures += 1
            except Exception as e:  # noqa: BLE001 - the watcher must outlive any failure
                if self._stop.is_set():
                    break
                failures += 1
                with self._cond:
                    self.failures += 1
                    self.last_error = (f"HTTP {getattr(e, 'status', 0)}: {_api_message(e)}" if isinstance(e, self._apis.exc)
                                       else f"{type(e).__name__}: {e}")
                    first = self._failing_since is None
                    if first:
                        self._failing_since = time.monotonic()
                    self._cond.notify_all()  # a snapshot waiting in settle() stops waiting
                (log.warning if first else log.debug)("kubernetes watch %s failed (%d in a row): %s",
                                                      self.what, failures, self.last_error)
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1)) * random.uniform(0.5, 1.0)
            self._stop.wait(delay)

    def _open(self, *args: Any, **kw: Any) -> Any:
        """The watch request; remembers the response so stop() can cut it. A connection alone
        is not health: a proxy that accepts and then ends every watch at once would otherwise
        reset the failure clock each cycle, and the stale fallback would never trigger."""
        resp = self._watch_call(*args, **kw)
        with self._cond:
            self._resp = resp
            self.reconnects += 1
        if self._stop.is_set():
            _shutdown(resp)
        return resp

    def _mark_healthy(self) -> None:
        with self._cond:
            if self._failing_since is not None:
                log.info("kubernetes watch %s: receiving again", self.what)
            self._failing_since = None

    def _watch_once(self) -> int:
        """One watch request, from the last version seen, until the server ends it. Returns the
        number of events applied. Raises _Gone on 410, _Relist, or the failure."""
        from kubernetes import watch  # lazy, as the rest of the SDK

        # return_type "object": events keep the raw JSON (the SDK's models would reject a
        # malformed object before our parser could name it, and drop fields we do not model)
        w = watch.Watch(return_type="object")
        with self._cond:
            rv = self._rv
        n = 0
        try:
            for ev in w.stream(self._open, *self._args, resource_version=rv, allow_watch_bookmarks=True,
                               timeout_seconds=self._s.watch_timeout_s,
                               _request_timeout=(self._s.timeout_s, min(self._s.watch_silence_s,
                                                                         self._s.watch_timeout_s + self._s.timeout_s))):
                if self._stop.is_set():
                    w.stop()
                    break
                self._apply(ev)
                n += 1
                if n == 1:
                    self._mark_healthy()
        except self._apis.exc as e:
            if getattr(e, "status", 0) == 410:
                raise _Gone(f"resourceVersion {rv} expired (410)") from None
            raise
        finally:
            with self._cond:
                self._resp = None
        return n

    def _apply(self, ev: Any) -> None:
        if ev is None:
            return  # the SDK yields None for a blank or non-JSON line: nothing to apply
        typ = ev.get("type") if isinstance(ev, Mapping) else None
        obj = ev.get("raw_object") if isinstance(ev, Mapping) else None
        rv = _rv(obj)
        if typ == "BOOKMARK":
            if rv:
                with self._cond:
                    self._rv = rv
            return
        k = _key(obj)
        if typ not in ("ADDED", "MODIFIED", "DELETED") or k is None:
            # nothing we can key: the cache can no longer be trusted to match the server
            err = self._entry(obj, f"{self.what} watch event") if typ != "DELETED" else None
            with self._cond:
                self._stray = (err.error if err else None) or QueueParseError(
                    f"kubernetes watch {self.what}", f"unusable event {str(ev)[:200]}")
            raise _Relist(f"unusable {typ or 'untyped'} event")
        with self._cond:
            self.events += 1
        if typ == "DELETED":
            with self._cond:
                self._entries.pop(k, None)
                self._rv = rv or self._rv
                self._cond.notify_all()
            return
        e = self._entry(obj, f"{self.what} watch event")
        with self._cond:
            old = self._entries.get(k)
            if old is None or _not_older(e.rv, old.rv):
                self._entries[k] = e
            self._rv = rv or self._rv
            self._cond.notify_all()


def _shutdown(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (urllib3 >= 2.3 can shut the socket from another
    thread; closing alone does not interrupt a blocked read)."""
    if resp is None:
        return
    for name in ("shutdown", "close"):
        fn = getattr(resp, name, None)
        if callable(fn):
            try:
                fn()
                return
            except Exception:  # noqa: BLE001, S112 - best effort, on the way out
                continue


@dataclass
class _Informers:
    pods: list[_Informer[PodInfo]]
    nodes: _Informer[Obj]
    jobs: list[_Informer[JobInfo]]
    finalizer: Any = field(default=None, repr=False)

    def all(self) -> list[_Informer[Any]]:
        return [*self.pods, self.nodes, *self.jobs]

    def pods_in(self, ns: str) -> _Informer[PodInfo] | None:
        return next((i for i in self.pods if i._args in ((ns,), ())), None)

    def jobs_in(self, ns: str) -> _Informer[JobInfo] | None:
        return next((i for i in self.jobs if i._args in ((ns,), ())), None)


def _make_informers(apis: _Apis, s: K8sSettings) -> _Informers:
    gpu = s.gpu_resource

    def pod(o: Any, where: str) -> PodInfo:
        return parse_pod(o, gpu, where)

    def node(o: Any, where: str) -> Obj:
        return check_node(o, s, where)

    def job(o: Any, where: str) -> JobInfo:
        return parse_job(o, s, where)

    core, batch = apis.core, apis.batch
    if s.namespaces:
        pods = [_Informer(f"pods in {ns}", "PodList", s, apis, core.list_namespaced_pod, core.list_namespaced_pod,
                          (ns,), pod) for ns in s.namespaces]
        jobs = [_Informer(f"jobs in {ns}", "JobList", s, apis, batch.list_namespaced_job, batch.list_namespaced_job,
                          (ns,), job) for ns in s.namespaces]
    else:
        pods = [_Informer("pods", "PodList", s, apis, core.list_pod_for_all_namespaces,
                          core.list_pod_for_all_namespaces, (), pod)]
        jobs = [_Informer("jobs", "JobList", s, apis, batch.list_job_for_all_namespaces,
                          batch.list_job_for_all_namespaces, (), job)]
    nodes: _Informer[Obj] = _Informer("nodes", "NodeList", s, apis, core.list_node, core.list_node, (), node)
    return _Informers(pods, nodes, jobs)


def _stop_informers(infs: list[_Informer[Any]], timeout: float) -> None:
    for i in infs:
        i.stop()
    for i in infs:
        i.join(timeout)


# --------------------------------------------------------------------------------------------
# The queue
# --------------------------------------------------------------------------------------------


class NodeNotIdle(QueueError):
    """A drain for idleness found GPU pods on the node (bound since the snapshot): refused."""

    def __init__(self, node_name: str, pods: Sequence[str]) -> None:
        super().__init__(f"node {node_name} is not idle: {', '.join(pods[:5])} run there")
        self.node_name = node_name
        self.pods = tuple(pods)


class KubernetesQueue:
    """:class:`~burst.ports.QueueSource` and :class:`~burst.ports.PreemptionControl` on Kubernetes.

    Called from one thread (the controller's); the watcher threads it starts are internal. Call
    :meth:`close` when done with it (idempotent; a later snapshot starts the watchers again)."""

    name = "kubernetes"

    def __init__(self, settings: K8sSettings, api_client: Any | None = None) -> None:
        self.settings = settings
        self._given_client = api_client
        self._apis: _Apis | None = None
        self._informers: _Informers | None = None
        self._informers_lock = threading.Lock()

    # ---- client (lazy) -------------------------------------------------------------------

    def _api(self) -> _Apis:
        if self._apis is not None:
            return self._apis
        from kubernetes import client, config  # lazy: only this adapter needs the SDK

        api_client = self._given_client
        if api_client is None:
            s = self.settings
            if s.host:
                conf = client.Configuration()
                conf.host = s.host
                conf.verify_ssl = s.verify_ssl
                if s.ca_file:
                    conf.ssl_ca_cert = str(s.ca_file)
                if s.token_file:
                    conf.api_key = {"authorization": s.token_file.read_text().strip()}
                    conf.api_key_prefix = {"authorization": "Bearer"}
                conf.retries = 0
                api_client = client.ApiClient(conf)
            elif s.in_cluster:
                config.load_incluster_config()
                api_client = client.ApiClient()
            else:
                api_client = config.new_client_from_config(
                    config_file=str(s.kubeconfig) if s.kubeconfig else None, context=s.context
                )
        self._apis = _Apis(
            client=api_client,
            core=client.CoreV1Api(api_client),
            batch=client.BatchV1Api(api_client),
            exc=client.exceptions.ApiException,
            v1eviction=client.V1Eviction,
            v1meta=client.V1ObjectMeta,
            v1delete=client.V1DeleteOptions,
        )
        return self._apis

    def _call(self, what: str, fn: Callable[..., T], *args: Any, ok_404: bool = False, **kw: Any) -> T | None:
        return _call(self._api(), self.settings, what, fn, *args, ok_404=ok_404, **kw)

    def _get_json(self, what: str, fn: Callable[..., Any], *args: Any, ok_404: bool = False, **kw: Any) -> Any:
        return _get_json(self._api(), self.settings, what, fn, *args, ok_404=ok_404, **kw)

    def _list_pods(self, field_selector: str | None = None) -> list[PodInfo]:
        apis = self._api()
        kw: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        docs: list[Any] = []
        if self.settings.namespaces:
            for ns in self.settings.namespaces:
                docs += _items(self._get_json(f"list pods in {ns}", apis.core.list_namespaced_pod, ns, **kw),
                               "PodList")
        else:
            docs = _items(self._get_json("list pods", apis.core.list_pod_for_all_namespaces, **kw), "PodList")
        return [parse_pod(p, self.settings.gpu_resource, f"PodList.items[{i}]") for i, p in enumerate(docs)]

    def _list_jobs(self) -> list[Any]:
        apis = self._api()
        if self.settings.namespaces:
            out: list[Any] = []
            for ns in self.settings.namespaces:
                out += _items(self._get_json(f"list jobs in {ns}", apis.batch.list_namespaced_job, ns), "JobList")
            return out
        return _items(self._get_json("list jobs", apis.batch.list_job_for_all_namespaces), "JobList")

    # ---- watch ---------------------------------------------------------------------------

    def _watching(self) -> _Informers:
        """The informers, started (initial LIST of each, then the watcher threads) on first use.
        Raises what a LIST raises; nothing is left running then, and the next call tries again."""
        with self._informers_lock:
            if self._informers is not None:
                return self._informers
            infs = _make_informers(self._api(), self.settings)
            for i in infs.all():
                i.sync()
            for i in infs.all():
                i.start()
            # a queue dropped without close() (a test, a one-shot command) stops its watchers
            infs.finalizer = weakref.finalize(self, _stop_informers, infs.all(), 0.0)
            self._informers = infs
            return infs

    def close(self) -> None:
        """Stop the watcher threads and wait for them (at most about ``timeout_s``). Idempotent."""
        with self._informers_lock:
            infs, self._informers = self._informers, None
        if infs is not None:
            infs.finalizer.detach()
            _stop_informers(infs.all(), self.settings.timeout_s + 1)

    def watch_stats(self) -> dict[str, dict[str, Any]]:
        """Per watched resource: version, objects, events, relists, reconnects, failures, parse
        errors, last error, whether failing and alive. Empty before the first snapshot."""
        infs = self._informers
        return {i.what: i.stats() for i in infs.all()} if infs is not None else {}

    def _remember(self, kind: str, obj: Any) -> None:
        """Read-your-writes: a write's answer into the matching cache (see the module docstring)."""
        infs = self._informers
        if infs is None or not isinstance(obj, Mapping):
            return
        ns = _obj(obj.get("metadata"), "metadata").get("namespace") or ""
        inf: _Informer[Any] | None = (infs.nodes if kind == "nodes" else
                                      infs.pods_in(ns) if kind == "pods" else infs.jobs_in(ns))
        if inf is not None:
            inf.remember(obj)

    def _before_write(self, kind: str, ns: str, name: str) -> Callable[[], None]:
        """Note the cached version of an object a write is about to change or delete; the returned
        function, called once the write succeeded, makes the next snapshot wait to see it."""
        infs = self._informers
        inf: _Informer[Any] | None = None
        if infs is not None:
            inf = infs.nodes if kind == "nodes" else infs.pods_in(ns) if kind == "pods" else infs.jobs_in(ns)
        if inf is None:
            return lambda: None
        key = f"{ns}/{name}" if ns else name
        version = inf.version_of(key)
        return lambda: inf.expect(key, version)

    # ---- QueueSource ---------------------------------------------------------------------

    def snapshot(self) -> QueueSnapshot:
        """Pending and running jobs and nodes. With ``watch`` (see the module docstring) this is
        built from the caches without a request, unless a watcher has been failing for more than
        ``watch_stale_after_s`` (then by LIST, as with ``watch: false``)."""
        if not self.settings.watch:
            return self._snapshot_by_list()
        infs = self._watching()
        deadline = time.monotonic() + self.settings.watch_settle_s
        for i in infs.all():
            i.settle(deadline)
        now = time.monotonic()
        stale = [(i.what, t) for i in infs.all() if (t := i.failing_for(now)) > self.settings.watch_stale_after_s]
        if stale:
            log.warning("kubernetes: watch failing (%s); reading by LIST",
                        ", ".join(f"{w} for {t:.1f} s" for w, t in stale))
            return self._snapshot_by_list()
        # Nodes first, then pods (as the Slurm adapter reads sinfo before squeue): the pods
        # are then at least as new as the nodes, so a node is never shown without a pod that
        # was bound to it before it was read (it would look idle and could be drained).
        nodes = infs.nodes.values()
        pods = [p for i in infs.pods for p in i.values()]
        jobs = [j for i in infs.jobs for j in i.values()]
        return assemble(pods, nodes, jobs, self.settings)

    def _snapshot_by_list(self) -> QueueSnapshot:
        apis = self._api()
        node_docs = _items(self._get_json("list nodes", apis.core.list_node), "NodeList")  # first: see above
        pods = self._list_pods()
        job_docs = self._list_jobs()
        jobs = [parse_job(d, self.settings, f"JobList.items[{i}]") for i, d in enumerate(job_docs)]
        return assemble(pods, node_docs, jobs, self.settings)

    def drain_node(self, node_name: str, reason: str, evict: bool = True, busy_ok: bool = False) -> None:
        """Cordon the node and evict its pods (Eviction API). Idempotent; unknown node: success.

        Burst drains only nodes its snapshot showed idle, and a snapshot is never quite fresh:
        a GPU pod bound since would be evicted a moment after it started. So unless ``busy_ok``,
        a fresh read that finds a GPU pod on the node refuses with :class:`NodeNotIdle` and
        changes nothing (checked before the cordon, and again after it, undoing the cordon)."""
        apis = self._api()
        if evict and not busy_ok:
            self._refuse_if_busy(node_name)
        body = {"spec": {"unschedulable": True},
                "metadata": {"annotations": {DRAIN_REASON_ANNOTATION: reason[:250]}}}
        node = self._get_json(f"cordon {node_name}", apis.core.patch_node, node_name, body, ok_404=True)
        if node is None:
            log.info("drain %s: no such node", node_name)
            return
        self._remember("nodes", node)
        if not evict:
            return
        pods = self._list_pods(field_selector=f"spec.nodeName={node_name}")
        if not busy_ok:
            try:
                self._refuse_if_busy(node_name, pods)
            except NodeNotIdle:
                # bound between the check and the cordon: the node is not idle after all
                self.undrain_node(node_name, "not idle after all")
                raise
        for p in pods:
            if p.terminal or p.deleting or p.owner_kind == "DaemonSet" or "kubernetes.io/config.mirror" in p.annotations:
                continue
            self._evict(p.namespace, p.name, reason)

    def _refuse_if_busy(self, node_name: str, pods: Sequence[PodInfo] | None = None) -> None:
        """NodeNotIdle when a live GPU pod is bound to the node (``pods``: read fresh if None)."""
        if pods is None:
            pods = self._list_pods(field_selector=f"spec.nodeName={node_name}")
        busy = [p for p in pods if p.gpus > 0 and not p.terminal and not p.deleting]
        if busy:
            raise NodeNotIdle(node_name, [f"{p.namespace}/{p.name}" for p in busy])

    def release_gang_hold(self, node_name: str) -> None:
        """Remove the burst.dev/gang taint a gang member registered with, once the whole gang
        has joined. A JSON patch whose ``test`` op guards the index, so a concurrent taint edit
        fails (QueueError; the next tick tries again) rather than removing the wrong taint.
        Unknown node, or no such taint: success."""
        apis = self._api()
        node = self._get_json(f"read node {node_name}", apis.core.read_node, node_name, ok_404=True)
        if node is None:
            return
        taints = _list(_obj(node.get("spec"), f"node {node_name}.spec").get("taints"), f"node {node_name}.spec.taints")
        for i, t in enumerate(taints):
            if isinstance(t, Mapping) and t.get("key") == GANG_TAINT_KEY:
                patch = [{"op": "test", "path": f"/spec/taints/{i}/key", "value": GANG_TAINT_KEY},
                         {"op": "remove", "path": f"/spec/taints/{i}"}]
                updated = self._get_json(f"release gang hold on {node_name}", apis.core.patch_node, node_name,
                                         patch, ok_404=True)
                if updated is not None:
                    self._remember("nodes", updated)
                return

    def undrain_node(self, node_name: str, reason: str) -> None:
        """Uncordon. Raises QueueError for an unknown node."""
        apis = self._api()
        body = {"spec": {"unschedulable": None}, "metadata": {"annotations": {DRAIN_REASON_ANNOTATION: None}}}
        node = self._get_json(f"uncordon {node_name}", apis.core.patch_node, node_name, body, ok_404=True)
        if node is None:
            raise QueueError(f"undrain {node_name}: no such node")
        self._remember("nodes", node)

    def remove_node(self, node_name: str) -> None:
        """Delete the Node object (the instance behind it is the controller's business). 404: success."""
        apis = self._api()
        seen = self._before_write("nodes", "", node_name)
        self._call(f"delete node {node_name}", apis.core.delete_node, node_name, ok_404=True)
        seen()

    def _evict(self, namespace: str, name: str, reason: str) -> bool:
        """Evict one pod. False when a PodDisruptionBudget refuses now (429); gone: True."""
        apis = self._api()
        opts = apis.v1delete(grace_period_seconds=self.settings.eviction_grace_s) \
            if self.settings.eviction_grace_s is not None else None
        body = apis.v1eviction(metadata=apis.v1meta(name=name, namespace=namespace), delete_options=opts)
        seen = self._before_write("pods", namespace, name)
        try:
            self._call(f"evict pod {namespace}/{name}", apis.core.create_namespaced_pod_eviction, name, namespace,
                       body, ok_404=True)
        except QueueError as e:
            if getattr(e, "status", 0) == 429:
                log.info("evict %s/%s refused for now (disruption budget): %s", namespace, name, reason)
                return False
            raise
        seen()
        return True

    # ---- PreemptionControl ---------------------------------------------------------------

    def _pods_of(self, jid: str) -> list[PodInfo]:
        ns, kind, name = split_job_id(jid)
        apis = self._api()
        docs = _items(self._get_json(f"list pods in {ns}", apis.core.list_namespaced_pod, ns), "PodList")
        pods = [parse_pod(p, self.settings.gpu_resource, f"PodList.items[{i}]") for i, p in enumerate(docs)]
        return [p for p in pods if gang_key(p) == (kind, name) and not p.terminal]

    def _cached_pods_of_job(self, ns: str, name: str) -> list[str]:
        """Names of the pods of batch/v1 Job ns/name in the watch cache (none without watch)."""
        infs = self._informers
        inf = infs.pods_in(ns) if infs is not None else None
        if inf is None:
            return []
        try:
            pods = inf.values()
        except QueueParseError:
            return []  # the snapshot reports that; holding must not fail over it
        return [p.name for p in pods if p.namespace == ns and p.owner_kind == "Job" and p.owner_name == name]

    def _owning_jobs(self, jid: str) -> tuple[list[tuple[str, str]], list[PodInfo]]:
        """batch/v1 Jobs behind a job id, and the bare pods that have no Job."""
        ns, kind, name = split_job_id(jid)
        if kind == "job":
            return [(ns, name)], []
        pods = self._pods_of(jid)
        jobs = sorted({(p.namespace, p.owner_name) for p in pods if p.owner_kind == "Job"})
        bare = [p for p in pods if p.owner_kind != "Job"]
        return jobs, bare

    def checkpoint(self, job_ids: Sequence[str]) -> None:
        """Annotate the job's pods with ``burst.dev/checkpoint-requested-at`` (POSIX seconds)."""
        apis = self._api()
        stamp = f"{time.time():.3f}"
        for jid in job_ids:
            for p in self._pods_of(jid):
                body = {"metadata": {"annotations": {CHECKPOINT_ANNOTATION: stamp}}}
                self._remember("pods", self._get_json(f"annotate pod {p.namespace}/{p.name}",
                                                      apis.core.patch_namespaced_pod, p.name, p.namespace, body,
                                                      ok_404=True))

    def hold(self, job_ids: Sequence[str]) -> None:
        """Suspend the owning batch/v1 Jobs (their pods are deleted, the Jobs stay); evict bare
        pods. Already suspended or gone: success."""
        apis = self._api()
        for jid in job_ids:
            jobs, bare = self._owning_jobs(jid)
            for ns, name in jobs:
                # the Job controller deletes the Job's pods: the next snapshot waits to see that
                seen = [self._before_write("pods", ns, p) for p in self._cached_pods_of_job(ns, name)]
                self._remember("jobs", self._get_json(f"suspend job {ns}/{name}", apis.batch.patch_namespaced_job,
                                                      name, ns, {"spec": {"suspend": True}}, ok_404=True))
                for f in seen:
                    f()
            for p in bare:
                if not self._evict(p.namespace, p.name, f"burst hold {jid}"):
                    raise QueueError(f"hold {jid}: eviction of {p.namespace}/{p.name} refused by a disruption budget")

    def release(self, job_ids: Sequence[str]) -> None:
        """Unsuspend the owning Jobs, in the order given. Bare pods cannot come back: success."""
        apis = self._api()
        for jid in job_ids:
            ns, kind, name = split_job_id(jid)
            if kind == "pod":
                continue
            if kind == "job":
                jobs = [(ns, name)]
            else:
                docs = self._list_jobs()
                jobs = []
                for d in docs:
                    tmeta = _obj(_obj(_obj(d.get("spec"), "job.spec").get("template"), "template").get("metadata"),
                                 "template.metadata")
                    tl = _strmap(tmeta.get("labels"), "template.metadata.labels")
                    ta = _strmap(tmeta.get("annotations"), "template.metadata.annotations")
                    meta = _obj(d.get("metadata"), "job.metadata")
                    fake = PodInfo(ns, "", "", tl, ta, "Job", _text(meta.get("name"), "job.metadata.name"), 0, "",
                                   "", False, "", 0.0, None, 0, "", {}, False)
                    if meta.get("namespace") == ns and gang_key(fake) == (kind, name):
                        jobs.append((ns, fake.owner_name))
            for jns, jname in jobs:
                self._remember("jobs", self._get_json(f"resume job {jns}/{jname}", apis.batch.patch_namespaced_job,
                                                      jname, jns, {"spec": {"suspend": False}}, ok_404=True))


def _api_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if body:
        try:
            doc = json.loads(body)
            if isinstance(doc, dict) and doc.get("message"):
                return str(doc["message"])
        except (TypeError, ValueError):
            pass
    return str(getattr(e, "reason", "") or e)


def _is_transport_error(e: BaseException) -> bool:
    import urllib3.exceptions as ue

    return isinstance(e, ue.HTTPError | TimeoutError | ConnectionError | OSError)
