"""Pure parsing for the Kubernetes adapter: API objects (JSON as the server serves them) -> domain.

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

Every function here is pure (no I/O, no clock): the adapter and the informers feed it what a LIST,
a WATCH event or a write's answer returned. An object that cannot be read raises
:class:`~burst.errors.QueueParseError` naming the object and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from burst.domain import GANG_HOLD_LABEL, Job, JobState, Node, QueueSnapshot
from burst.errors import QueueError, QueueParseError
from burst.queues.kubernetes.settings import K8sSettings

Obj = Mapping[str, Any]

POD_GROUP_KEYS = ("scheduling.x-k8s.io/pod-group", "pod-group.scheduling.sigs.k8s.io")
VOLCANO_GROUP_KEY = "scheduling.k8s.io/group-name"
JOBSET_KEY = "jobset.sigs.k8s.io/jobset-name"
GANG_TAINT_KEY = "burst.dev/gang"  # a gang member registers with it (builtin:k8s user data)


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


def as_obj(v: Any, where: str) -> Obj:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise QueueParseError(where, f"expected an object, got {type(v).__name__} {v!r}")
    return v


def as_list(v: Any, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise QueueParseError(where, f"expected a list, got {type(v).__name__} {v!r}")
    return v


def as_text(v: Any, where: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise QueueParseError(where, f"expected text, got {type(v).__name__} {v!r}")
    return v


def as_strmap(v: Any, where: str) -> dict[str, str]:
    m = as_obj(v, where)
    for k, x in m.items():
        if not isinstance(x, str):
            raise QueueParseError(f"{where}.{k}", f"expected text, got {x!r}")
    return dict(m)


def pod_gpus(spec: Obj, gpu: str, where: str) -> int:
    """GPUs a pod asks for: sum over containers (request, else limit), at least the largest init
    container's (the scheduler's effective request)."""

    def one(c: Any, w: str) -> float:
        res = as_obj(as_obj(c, w).get("resources"), f"{w}.resources")
        req = as_obj(res.get("requests"), f"{w}.resources.requests")
        lim = as_obj(res.get("limits"), f"{w}.resources.limits")
        if gpu in req:
            return parse_quantity(req[gpu], f"{w}.resources.requests[{gpu}]")
        if gpu in lim:
            return parse_quantity(lim[gpu], f"{w}.resources.limits[{gpu}]")
        return 0.0

    main = sum(one(c, f"{where}.containers[{i}]") for i, c in enumerate(as_list(spec.get("containers"),
                                                                              f"{where}.containers")))
    init = max((one(c, f"{where}.initContainers[{i}]")
                for i, c in enumerate(as_list(spec.get("initContainers"), f"{where}.initContainers"))),
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
    p = as_obj(p, where)
    meta = as_obj(p.get("metadata"), f"{where}.metadata")
    ns = as_text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = as_text(meta.get("name"), f"{where}.metadata.name")
    if not name:
        raise QueueParseError(f"{where}.metadata.name", "missing")
    where = f"pod {ns}/{name}"
    spec = as_obj(p.get("spec"), f"{where}.spec")
    status = as_obj(p.get("status"), f"{where}.status")
    owner_kind = owner_name = ""
    for i, o in enumerate(as_list(meta.get("ownerReferences"), f"{where}.metadata.ownerReferences")):
        o = as_obj(o, f"{where}.metadata.ownerReferences[{i}]")
        if o.get("controller") or not owner_kind:
            owner_kind = as_text(o.get("kind"), f"{where}.metadata.ownerReferences[{i}].kind")
            owner_name = as_text(o.get("name"), f"{where}.metadata.ownerReferences[{i}].name")
    unsched, message = False, ""
    for i, c in enumerate(as_list(status.get("conditions"), f"{where}.status.conditions")):
        c = as_obj(c, f"{where}.status.conditions[{i}]")
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            unsched = True
            message = as_text(c.get("message"), f"{where}.status.conditions[{i}].message")
    started = status.get("startTime")
    prio = spec.get("priority", 0)
    if prio is None:
        prio = 0
    if isinstance(prio, bool) or not isinstance(prio, int):
        raise QueueParseError(f"{where}.spec.priority", f"expected an integer, got {prio!r}")
    containers = as_list(spec.get("containers"), f"{where}.spec.containers")
    image = as_text(as_obj(containers[0], f"{where}.spec.containers[0]").get("image"),
                  f"{where}.spec.containers[0].image") if containers else ""
    return PodInfo(
        namespace=ns,
        name=name,
        uid=as_text(meta.get("uid"), f"{where}.metadata.uid"),
        labels=as_strmap(meta.get("labels"), f"{where}.metadata.labels"),
        annotations=as_strmap(meta.get("annotations"), f"{where}.metadata.annotations"),
        owner_kind=owner_kind,
        owner_name=owner_name,
        gpus=pod_gpus(spec, gpu, f"{where}.spec"),
        phase=as_text(status.get("phase"), f"{where}.status.phase"),
        node_name=as_text(spec.get("nodeName"), f"{where}.spec.nodeName"),
        unschedulable=unsched,
        message=message,
        created=parse_time(meta.get("creationTimestamp"), f"{where}.metadata.creationTimestamp"),
        started=parse_time(started, f"{where}.status.startTime") if started else None,
        priority=prio,
        image=image,
        node_selector=as_strmap(spec.get("nodeSelector"), f"{where}.spec.nodeSelector"),
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
    j = as_obj(j, where)
    meta = as_obj(j.get("metadata"), f"{where}.metadata")
    ns = as_text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = as_text(meta.get("name"), f"{where}.metadata.name")
    where = f"job {ns}/{name}"
    spec = as_obj(j.get("spec"), f"{where}.spec")
    if spec.get("suspend") is not True:
        return None
    tmpl = as_obj(spec.get("template"), f"{where}.spec.template")
    tspec = as_obj(tmpl.get("spec"), f"{where}.spec.template.spec")
    tmeta = as_obj(tmpl.get("metadata"), f"{where}.spec.template.metadata")
    gpus = pod_gpus(tspec, s.gpu_resource, f"{where}.spec.template.spec")
    if gpus <= 0:
        return None
    par = spec.get("parallelism", 1)
    if par is None:
        par = 1
    if isinstance(par, bool) or not isinstance(par, int) or par < 0:
        raise QueueParseError(f"{where}.spec.parallelism", f"expected a count, got {par!r}")
    par = max(1, par)
    labels = {**as_strmap(meta.get("labels"), f"{where}.metadata.labels"),
              **as_strmap(tmeta.get("labels"), f"{where}.spec.template.metadata.labels")}
    annotations = {**as_strmap(meta.get("annotations"), f"{where}.metadata.annotations"),
                   **as_strmap(tmeta.get("annotations"), f"{where}.spec.template.metadata.annotations")}
    containers = as_list(tspec.get("containers"), f"{where}.spec.template.spec.containers")
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
        image=as_text(as_obj(containers[0], f"{where}.containers[0]").get("image"), f"{where}.image")
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
        n = as_obj(n, f"nodes[{i}]")
        meta = as_obj(n.get("metadata"), f"nodes[{i}].metadata")
        name = as_text(meta.get("name"), f"nodes[{i}].metadata.name")
        if not name:
            raise QueueParseError(f"nodes[{i}].metadata.name", "missing")
        where = f"node {name}"
        spec = as_obj(n.get("spec"), f"{where}.spec")
        status = as_obj(n.get("status"), f"{where}.status")
        alloc = as_obj(status.get("allocatable"), f"{where}.status.allocatable")
        gpus = int(parse_quantity(alloc.get(s.gpu_resource, "0"), f"{where}.status.allocatable[{s.gpu_resource}]"))
        labels = as_strmap(meta.get("labels"), f"{where}.metadata.labels")
        ready = False
        for j, c in enumerate(as_list(status.get("conditions"), f"{where}.status.conditions")):
            c = as_obj(c, f"{where}.status.conditions[{j}]")
            if c.get("type") == "Ready":
                ready = c.get("status") == "True"
        taints = [as_obj(t, f"{where}.spec.taints[{j}]") for j, t in enumerate(as_list(spec.get("taints"),
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


def list_items(doc: Any, what: str) -> list[Any]:
    d = as_obj(doc, what)
    return as_list(d.get("items"), f"{what}.items")


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What a snapshot needs from a batch/v1 Job: its id, creation time and, if suspended, the
    HELD job it stands for."""

    jid: str
    submitted: float
    held: Job | None


def parse_job(d: Any, s: K8sSettings, where: str = "job") -> JobInfo:
    held = parse_suspended_job(d, s, where)
    meta = as_obj(as_obj(d, where).get("metadata"), f"{where}.metadata")
    ns = as_text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = as_text(meta.get("name"), f"{where}.metadata.name")
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
    return as_obj(n, where)


def assemble(pods: Sequence[PodInfo], node_docs: Sequence[Any], jobs: Sequence[JobInfo],
             s: K8sSettings) -> QueueSnapshot:
    """Parsed pods, Node objects and Jobs -> the snapshot. Pure."""
    held = [j.held for j in jobs if j.held is not None]
    submitted = {j.jid: j.submitted for j in jobs}
    pending, running = build_jobs(pods, s, submitted)
    nodes = build_nodes(node_docs, pods, s)
    return QueueSnapshot(pending=tuple(pending + held), running=tuple(running), nodes=tuple(nodes))
