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
* **Time limit** (``Job.time_limit_s``): ``activeDeadlineSeconds`` of the pods (from each pod's
  start) or of their batch/v1 Job (from the Job's ``status.startTime``), whichever ends the job
  first; none when neither is set (the job may run forever).
* **Priority**: the pods' ``spec.priority`` (what the Priority admission plugin resolved from
  their PriorityClass), raised to burst's restore priority (annotation
  ``burst.dev/restore-priority`` on the batch/v1 Job, set by ``KubernetesQueue.set_priority``
  after a grand challenge) where that is higher. Only burst reads that annotation.
* **Grand-challenge Jobs** (label ``burst.dev/grand-challenge``) are reported from their creation
  until they finish (condition ``Complete``/``Failed``) even while no pod shows them, so the
  challenge runner never takes a Job whose pods are not made or judged yet for ended.

Every function here is pure (no I/O, no clock): the adapter and the informers feed it what a LIST,
a WATCH event or a write's answer returned. An object that cannot be read raises
:class:`~burst.errors.QueueParseError` naming the object and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
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
DRAIN_REASON_ANNOTATION = "burst.dev/drain-reason"  # why burst (or its node agent) cordoned a node
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


def parse_deadline(v: Any, where: str) -> float | None:
    """``activeDeadlineSeconds`` (a positive integer) as seconds; None when unset."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise QueueParseError(where, f"expected a positive number of seconds, got {v!r}")
    return float(v)


def parse_priority(v: Any, where: str) -> int | None:
    """An integer priority (``spec.priority``, or burst's restore-priority annotation as text)."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise QueueParseError(where, f"expected an integer, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int):
        raise QueueParseError(where, f"expected an integer, got {v!r}")
    return v


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
    deadline_s: float | None = None  # spec.activeDeadlineSeconds (counts from status.startTime)

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
        deadline_s=parse_deadline(spec.get("activeDeadlineSeconds"), f"{where}.spec.activeDeadlineSeconds"),
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


def _time_limit(pods: Sequence[PodInfo], start: float | None, owners: Sequence[JobInfo]) -> float | None:
    """The group's time limit, as ``Job.time_limit_s`` means it (``start_time + limit`` is when it
    is expected to end). A pod's ``activeDeadlineSeconds`` counts from its own start, a batch/v1
    Job's from the Job's ``status.startTime`` (or, unknown, from the group's start); the group ends
    when its last pod does, or when a Job's deadline ends all of it. None when a pod has no limit
    and no Job gives one. Not started (pending): the shortest limit given."""
    job_limits = [o.deadline_s for o in owners if o.deadline_s is not None]
    if start is None:
        pod_limits = [p.deadline_s for p in pods if p.deadline_s is not None]
        return min(pod_limits + job_limits) if pod_limits or job_limits else None
    ends: list[float] = []
    if all(p.deadline_s is not None for p in pods):
        ends.append(max((p.started if p.started is not None else start) + (p.deadline_s or 0.0) for p in pods))
    ends += [(o.started if o.started is not None else start) + (o.deadline_s or 0.0)
             for o in owners if o.deadline_s is not None]
    return max(0.0, min(ends) - start) if ends else None


def _group_job(jid: str, pods: Sequence[PodInfo], state: JobState, s: K8sSettings,
               submitted: float | None = None, owners: Sequence[JobInfo] = ()) -> Job:
    """``owners``: the batch/v1 Jobs the pods belong to (time limits, restore priorities)."""
    first = min(pods, key=lambda p: (p.created, p.name))
    per_pod = max(p.gpus for p in pods)
    n = len(pods)
    starts = [p.started for p in pods if p.started is not None]
    meta_labels = {**first.labels}
    labels = {"namespace": first.namespace, "kind": jid.split("/")[1], "pods": str(n)}
    if first.message:
        labels["message"] = first.message
    start = min(starts) if starts else (first.created if state is JobState.RUNNING else None)
    boosts = [o.restore_priority for o in owners if o.restore_priority is not None]
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
        start_time=start,
        node_names=tuple(sorted({p.node_name for p in pods if p.node_name})),
        reason="Unschedulable" if state is JobState.PENDING else "",
        priority=max([p.priority for p in pods] + boosts),
        time_limit_s=_time_limit(pods, start, owners),
    )


def build_jobs(
    pods: Sequence[PodInfo], s: K8sSettings, submitted: Mapping[str, float] | None = None,
    jobs: Mapping[tuple[str, str], JobInfo] | None = None,
) -> tuple[list[Job], list[Job]]:
    """Pods -> (pending, running) jobs. Pure. ``submitted`` maps job ids to their batch/v1 Job's
    creation time: a Job's wait starts when it was created, not when its (re)created pods were.
    ``jobs``: the batch/v1 Jobs by (namespace, name), for their time limits and restore
    priorities."""
    submitted = submitted or {}
    jobs = jobs or {}
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

    def owners(ps: Sequence[PodInfo]) -> list[JobInfo]:
        keys = sorted({(p.namespace, p.owner_name) for p in ps if p.owner_kind == "Job"})
        return [jobs[k] for k in keys if k in jobs]

    pending = [_group_job(j, ps, JobState.PENDING, s, submitted.get(j), owners(ps)) for j, ps in pend.items()]
    running = [_group_job(j, ps, JobState.RUNNING, s, submitted.get(j), owners(ps)) for j, ps in run.items()]
    pending.sort(key=lambda j: (-j.priority, j.submit_time, j.id))
    running.sort(key=lambda j: (j.start_time or 0.0, j.id))
    return pending, running


CHALLENGE_LABEL = "burst.dev/grand-challenge"  # on a challenge Job and its pods: the challenge id
RESTORE_PRIORITY_ANNOTATION = "burst.dev/restore-priority"  # KubernetesQueue.set_priority
FINISHED_CONDITIONS = ("Complete", "Failed")


def _template_job(j: Obj, s: K8sSettings, where: str, state: JobState, reason: str,
                  need_gpus: bool = True) -> Job | None:
    """A batch/v1 Job read from its spec (no pods needed): ``parallelism`` pods of its template.
    None when ``need_gpus`` and the template asks for no GPU."""
    meta = as_obj(j.get("metadata"), f"{where}.metadata")
    ns = as_text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = as_text(meta.get("name"), f"{where}.metadata.name")
    where = f"job {ns}/{name}"
    spec = as_obj(j.get("spec"), f"{where}.spec")
    tmpl = as_obj(spec.get("template"), f"{where}.spec.template")
    tspec = as_obj(tmpl.get("spec"), f"{where}.spec.template.spec")
    tmeta = as_obj(tmpl.get("metadata"), f"{where}.spec.template.metadata")
    gpus = pod_gpus(tspec, s.gpu_resource, f"{where}.spec.template.spec")
    if gpus <= 0 and need_gpus:
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
    # A template rarely has spec.priority (the Priority admission plugin fills it in on each pod
    # from priorityClassName; burst does not read PriorityClasses): the restore priority burst
    # set, else the template's own, else 0.
    prio = parse_priority(as_strmap(meta.get("annotations"), f"{where}.metadata.annotations")
                          .get(RESTORE_PRIORITY_ANNOTATION), f"{where}.metadata.annotations[{RESTORE_PRIORITY_ANNOTATION}]")
    if prio is None:
        prio = parse_priority(tspec.get("priority"), f"{where}.spec.template.spec.priority") or 0
    limits = [x for x in (parse_deadline(spec.get("activeDeadlineSeconds"), f"{where}.spec.activeDeadlineSeconds"),
                          parse_deadline(tspec.get("activeDeadlineSeconds"),
                                         f"{where}.spec.template.spec.activeDeadlineSeconds")) if x is not None]
    return Job(
        id=job_id(ns, "job", name),
        gpus=gpus * par,
        submit_time=parse_time(meta.get("creationTimestamp"), f"{where}.metadata.creationTimestamp"),
        state=state,
        owner=labels.get(s.owner_label, ""),
        team=labels.get(s.team_label, ns),
        gpus_per_node=gpus if par > 1 else 0,
        nodes=par,
        labels=MappingProxyType({"namespace": ns, "kind": "job", "pods": str(par)}),
        image=as_text(as_obj(containers[0], f"{where}.containers[0]").get("image"), f"{where}.image")
        if containers else "",
        may_burst=_opted_in(labels, annotations, s),
        reason=reason,
        priority=prio,
        time_limit_s=min(limits) if limits else None,
    )


def parse_suspended_job(j: Any, s: K8sSettings, where: str = "job") -> Job | None:
    """A suspended batch/v1 Job that asks for GPUs -> a HELD job; else None. Its priority is
    burst's restore priority (:data:`RESTORE_PRIORITY_ANNOTATION`) where set; its time limit
    the Job's (or its template's) ``activeDeadlineSeconds``."""
    j = as_obj(j, where)
    spec = as_obj(j.get("spec"), f"{where}.spec")
    if spec.get("suspend") is not True:
        return None
    return _template_job(j, s, where, JobState.HELD, "Suspended")


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
        # Why a cordoned node was drained, as Slurm shows a drained node's reason: burst's own
        # drains and the node agent's spot notice (burst/agent: cordon, taint and this
        # annotation) write it; the controller's spot handling reads the notice from it.
        annotations = as_strmap(meta.get("annotations"), f"{where}.metadata.annotations")
        drain_reason = annotations.get(DRAIN_REASON_ANNOTATION, "") if cordoned else ""
        iid = labels.get(s.instance_id_label, "")
        node_labels = dict(labels)
        if cloud_taint or iid:
            node_labels["burst.dev/cloud"] = "true"
        if cordoned:
            node_labels["burst.dev/cordoned"] = "true"
        if gang_hold is not None:
            node_labels[GANG_HOLD_LABEL] = gang_hold
        if drain_reason:
            node_labels["reason"] = drain_reason
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
    HELD job it stands for; its ``activeDeadlineSeconds`` and ``status.startTime`` (time
    limits), burst's restore priority, and, for a grand-challenge Job (label
    :data:`CHALLENGE_LABEL`) that has not finished, the job read from its spec (``challenge``)."""

    jid: str
    submitted: float
    held: Job | None
    deadline_s: float | None = None
    started: float | None = None
    restore_priority: int | None = None
    challenge: Job | None = None


def parse_job(d: Any, s: K8sSettings, where: str = "job") -> JobInfo:
    held = parse_suspended_job(d, s, where)
    d = as_obj(d, where)
    meta = as_obj(d.get("metadata"), f"{where}.metadata")
    ns = as_text(meta.get("namespace"), f"{where}.metadata.namespace")
    name = as_text(meta.get("name"), f"{where}.metadata.name")
    where = f"job {ns}/{name}"
    spec = as_obj(d.get("spec"), f"{where}.spec")
    status = as_obj(d.get("status"), f"{where}.status")
    started = status.get("startTime")
    annotations = as_strmap(meta.get("annotations"), f"{where}.metadata.annotations")
    finished = any(
        as_obj(c, f"{where}.status.conditions[{i}]").get("type") in FINISHED_CONDITIONS
        and as_obj(c, f"{where}.status.conditions[{i}]").get("status") == "True"
        for i, c in enumerate(as_list(status.get("conditions"), f"{where}.status.conditions"))
    )
    challenge = None
    if as_strmap(meta.get("labels"), f"{where}.metadata.labels").get(CHALLENGE_LABEL) and not finished \
            and held is None and not meta.get("deletionTimestamp"):
        challenge = _template_job(d, s, where, JobState.PENDING, "ChallengeJob", need_gpus=False)
    return JobInfo(
        jid=job_id(ns, "job", name),
        submitted=parse_time(meta.get("creationTimestamp"), f"{where}.metadata.creationTimestamp"),
        held=held,
        deadline_s=parse_deadline(spec.get("activeDeadlineSeconds"), f"{where}.spec.activeDeadlineSeconds"),
        started=parse_time(started, f"{where}.status.startTime") if started else None,
        restore_priority=parse_priority(annotations.get(RESTORE_PRIORITY_ANNOTATION),
                                        f"{where}.metadata.annotations[{RESTORE_PRIORITY_ANNOTATION}]"),
        challenge=challenge,
    )


def check_node(n: Any, s: K8sSettings, where: str = "node") -> Obj:
    """A Node object, checked as strictly as :func:`build_nodes` reads it; returned as is."""
    try:
        build_nodes([n], [], s)
    except QueueParseError as e:
        if e.where.startswith("nodes[0]"):  # unnamed: say where it came from
            raise QueueParseError(where + e.where.removeprefix("nodes[0]"), e.message) from None
        raise
    return as_obj(n, where)


def challenge_jobs(jobs: Sequence[JobInfo], pods: Sequence[PodInfo], shown: Iterable[str]) -> list[Job]:
    """Grand-challenge Jobs that have not finished and that the pods do not show (``shown``: the
    ids already in the snapshot). A challenge Job is reported from its creation to its end, so
    the runner never mistakes it for ended while its pods wait for the scheduler's first
    verdict, before the Job controller has made them, or when they ask for no GPU: RUNNING with
    the nodes of its bound pods, else PENDING."""
    have = set(shown)
    out: list[Job] = []
    for info in jobs:
        job = info.challenge
        if job is None or job.id in have:
            continue
        ns, _, name = split_job_id(job.id)
        mine = [p for p in pods if p.namespace == ns and p.owner_kind == "Job" and p.owner_name == name
                and not p.terminal]
        bound = [p for p in mine if p.node_name]
        if bound:
            starts = [p.started for p in bound if p.started is not None]
            job = replace(job, state=JobState.RUNNING, reason="",
                          start_time=min(starts) if starts else min(p.created for p in bound),
                          node_names=tuple(sorted({p.node_name for p in bound})))
        out.append(job)
    return out


def assemble(pods: Sequence[PodInfo], node_docs: Sequence[Any], jobs: Sequence[JobInfo],
             s: K8sSettings) -> QueueSnapshot:
    """Parsed pods, Node objects and Jobs -> the snapshot. Pure."""
    held = [j.held for j in jobs if j.held is not None]
    submitted = {j.jid: j.submitted for j in jobs}
    by_name: dict[tuple[str, str], JobInfo] = {}
    for j in jobs:
        ns, _, name = split_job_id(j.jid)
        by_name[(ns, name)] = j
    pending, running = build_jobs(pods, s, submitted, by_name)
    extra = challenge_jobs(jobs, pods, [j.id for j in pending + running + held])
    running += [j for j in extra if j.state is JobState.RUNNING]
    pending += [j for j in extra if j.state is JobState.PENDING]
    nodes = build_nodes(node_docs, pods, s)
    return QueueSnapshot(pending=tuple(pending + held), running=tuple(running), nodes=tuple(nodes))


# ---- grand-challenge Job manifests ------------------------------------------------------------

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"  # what a cordon puts on a node


def challenge_job_body(text: str, *, name: str, namespace: str, challenge_id: str, nodes: Sequence[str],
                       duration_s: float) -> dict[str, Any]:
    """The batch/v1 Job to create for a grand challenge, from its manifest (YAML or JSON, one
    document). Pure. Raises :class:`~burst.errors.QueueError` naming the problem with the manifest.

    What burst sets over the manifest: ``metadata.name``/``namespace`` (``generateName`` and
    server-set fields dropped); the label :data:`CHALLENGE_LABEL` on the Job and its pods;
    ``spec.suspend: false``; ``activeDeadlineSeconds`` = the challenge's duration (or the
    manifest's, if shorter); a required node affinity on ``metadata.name`` in ``nodes``, ANDed
    with every term the manifest has; and a toleration of the cordon's
    ``node.kubernetes.io/unschedulable:NoSchedule`` taint (the reserved nodes are cordoned, and
    kube-scheduler places a pod on a cordoned node only when it tolerates that taint)."""
    import copy
    import math

    import yaml

    what = "the challenge's Kubernetes manifest"
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise QueueError(f"{what} is not YAML: {' '.join(str(e).split())[:300]}") from None
    if len(docs) != 1:
        raise QueueError(f"{what} holds {len(docs)} documents; give exactly one batch/v1 Job")
    doc = docs[0]
    if not isinstance(doc, dict):
        raise QueueError(f"{what} is not an object but {type(doc).__name__}")
    if doc.get("kind") != "Job" or doc.get("apiVersion") != "batch/v1":
        raise QueueError(f"{what} is {doc.get('apiVersion')!r} {doc.get('kind')!r}, not a batch/v1 Job")
    if not nodes:
        raise QueueError(f"{what}: no node to run on")
    body: dict[str, Any] = copy.deepcopy(doc)
    try:
        meta = body.setdefault("metadata", {}) or {}
        spec = body.get("spec")
        tmpl = spec.get("template") if isinstance(spec, dict) else None
        tspec = tmpl.get("spec") if isinstance(tmpl, dict) else None
        if not isinstance(tspec, dict) or not isinstance(tspec.get("containers"), list) or not tspec["containers"]:
            raise QueueError(f"{what} has no spec.template.spec.containers")
        if tspec.get("nodeName"):
            raise QueueError(f"{what} pins spec.template.spec.nodeName; burst places it on the reserved nodes")
        assert isinstance(spec, dict) and isinstance(tmpl, dict)
        for k in ("generateName", "resourceVersion", "uid", "creationTimestamp", "selfLink", "managedFields"):
            meta.pop(k, None)
        body.pop("status", None)
        meta["name"], meta["namespace"] = name, namespace
        meta["labels"] = {**(meta.get("labels") or {}), CHALLENGE_LABEL: challenge_id}
        body["metadata"] = meta
        tmeta = tmpl.setdefault("metadata", {}) or {}
        tmeta["labels"] = {**(tmeta.get("labels") or {}), CHALLENGE_LABEL: challenge_id}
        tmpl["metadata"] = tmeta
        spec["suspend"] = False
        limit = max(1, math.ceil(duration_s))
        own = spec.get("activeDeadlineSeconds")
        spec["activeDeadlineSeconds"] = min(limit, own) if isinstance(own, int) and not isinstance(own, bool) \
            and own > 0 else limit
        tol = list(tspec.get("tolerations") or [])
        if not any(isinstance(t, dict) and t.get("key") == UNSCHEDULABLE_TAINT for t in tol):
            tol.append({"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"})
        tspec["tolerations"] = tol
        ours = {"key": "metadata.name", "operator": "In", "values": sorted(nodes)}
        aff = tspec.setdefault("affinity", {}) or {}
        na = aff.setdefault("nodeAffinity", {}) or {}
        req = na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        terms = list(req.get("nodeSelectorTerms") or [])
        # terms are ORed, expressions within a term ANDed: ours goes into every term
        terms = [{**t, "matchFields": [*(t.get("matchFields") or []), ours]} for t in terms] or [{"matchFields": [ours]}]
        req["nodeSelectorTerms"] = terms
        na["requiredDuringSchedulingIgnoredDuringExecution"] = req
        aff["nodeAffinity"] = na
        tspec["affinity"] = aff
    except (AttributeError, TypeError) as e:  # a field of the wrong shape (a list for a map...)
        raise QueueError(f"{what} has a field of the wrong type: {e}") from None
    return body
