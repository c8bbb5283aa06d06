"""Kubernetes as burst's on-prem queue, through the official ``kubernetes`` client (lazy import).

Reading (one LIST each of pods, nodes and batch/v1 Jobs per snapshot):

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

Errors: a timeout, a refused connection or a 5xx becomes :class:`~burst.errors.QueueUnavailable`;
an object that cannot be read becomes :class:`~burst.errors.QueueParseError` naming the object
and field; other API errors become :class:`~burst.errors.QueueError`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from burst.domain import Job, JobState, Node, QueueSnapshot
from burst.errors import QueueError, QueueParseError, QueueUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Obj = Mapping[str, Any]

POD_GROUP_KEYS = ("scheduling.x-k8s.io/pod-group", "pod-group.scheduling.sigs.k8s.io")
VOLCANO_GROUP_KEY = "scheduling.k8s.io/group-name"
JOBSET_KEY = "jobset.sigs.k8s.io/jobset-name"
CHECKPOINT_ANNOTATION = "burst.dev/checkpoint-requested-at"
DRAIN_REASON_ANNOTATION = "burst.dev/drain-reason"


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
        cordoned = bool(spec.get("unschedulable"))
        iid = labels.get(s.instance_id_label, "")
        node_labels = dict(labels)
        if cloud_taint or iid:
            node_labels["burst.dev/cloud"] = "true"
        if cordoned:
            node_labels["burst.dev/cordoned"] = "true"
        out.append(
            Node(
                name=name,
                gpus=gpus,
                gpus_used=used.get(name, 0),
                gpu_model=labels.get(s.gpu_model_label, ""),
                schedulable=ready and not cordoned,
                instance_id=iid,
                labels=MappingProxyType(node_labels),
                running_jobs=len(jobs_on.get(name, ())),
            )
        )
    return out


def _items(doc: Any, what: str) -> list[Any]:
    d = _obj(doc, what)
    return _list(d.get("items"), f"{what}.items")


# --------------------------------------------------------------------------------------------
# The queue
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


class KubernetesQueue:
    """:class:`~burst.ports.QueueSource` and :class:`~burst.ports.PreemptionControl` on Kubernetes."""

    name = "kubernetes"

    def __init__(self, settings: K8sSettings, api_client: Any | None = None) -> None:
        self.settings = settings
        self._given_client = api_client
        self._apis: _Apis | None = None

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
        """One API call with the timeout; SDK and transport errors mapped onto burst's errors."""
        apis = self._api()
        # a (connect, read) pair: the client ignores a lone float (it only honours a lone int)
        kw.setdefault("_request_timeout", (self.settings.timeout_s, self.settings.timeout_s))
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

    def _get_json(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        resp = self._call(what, fn, *args, _preload_content=False, **kw)
        data: Any = getattr(resp, "data", resp)
        try:
            return json.loads(data)
        except (TypeError, ValueError) as e:
            raise QueueParseError(f"kubernetes {what}", f"answer is not JSON: {e}") from None

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

    # ---- QueueSource ---------------------------------------------------------------------

    def snapshot(self) -> QueueSnapshot:
        apis = self._api()
        pods = self._list_pods()
        node_docs = _items(self._get_json("list nodes", apis.core.list_node), "NodeList")
        job_docs = self._list_jobs()
        held = [
            j for i, d in enumerate(job_docs)
            if (j := parse_suspended_job(d, self.settings, f"JobList.items[{i}]")) is not None
        ]
        submitted: dict[str, float] = {}
        for i, d in enumerate(job_docs):
            meta = _obj(_obj(d, f"JobList.items[{i}]").get("metadata"), f"JobList.items[{i}].metadata")
            ns = _text(meta.get("namespace"), f"JobList.items[{i}].metadata.namespace")
            name = _text(meta.get("name"), f"JobList.items[{i}].metadata.name")
            submitted[job_id(ns, "job", name)] = parse_time(
                meta.get("creationTimestamp"), f"job {ns}/{name}.metadata.creationTimestamp")
        pending, running = build_jobs(pods, self.settings, submitted)
        nodes = build_nodes(node_docs, pods, self.settings)
        return QueueSnapshot(pending=tuple(pending + held), running=tuple(running), nodes=tuple(nodes))

    def drain_node(self, node_name: str, reason: str, evict: bool = True) -> None:
        """Cordon the node and evict its pods (Eviction API). Idempotent; unknown node: success."""
        apis = self._api()
        body = {"spec": {"unschedulable": True},
                "metadata": {"annotations": {DRAIN_REASON_ANNOTATION: reason[:250]}}}
        if self._call(f"cordon {node_name}", apis.core.patch_node, node_name, body, ok_404=True) is None:
            log.info("drain %s: no such node", node_name)
            return
        if not evict:
            return
        for p in self._list_pods(field_selector=f"spec.nodeName={node_name}"):
            if p.terminal or p.deleting or p.owner_kind == "DaemonSet" or "kubernetes.io/config.mirror" in p.annotations:
                continue
            self._evict(p.namespace, p.name, reason)

    def undrain_node(self, node_name: str, reason: str) -> None:
        """Uncordon. Raises QueueError for an unknown node."""
        apis = self._api()
        body = {"spec": {"unschedulable": None}, "metadata": {"annotations": {DRAIN_REASON_ANNOTATION: None}}}
        if self._call(f"uncordon {node_name}", apis.core.patch_node, node_name, body, ok_404=True) is None:
            raise QueueError(f"undrain {node_name}: no such node")

    def remove_node(self, node_name: str) -> None:
        """Delete the Node object (the instance behind it is the controller's business). 404: success."""
        apis = self._api()
        self._call(f"delete node {node_name}", apis.core.delete_node, node_name, ok_404=True)

    def _evict(self, namespace: str, name: str, reason: str) -> bool:
        """Evict one pod. False when a PodDisruptionBudget refuses now (429); gone: True."""
        apis = self._api()
        opts = apis.v1delete(grace_period_seconds=self.settings.eviction_grace_s) \
            if self.settings.eviction_grace_s is not None else None
        body = apis.v1eviction(metadata=apis.v1meta(name=name, namespace=namespace), delete_options=opts)
        try:
            self._call(f"evict pod {namespace}/{name}", apis.core.create_namespaced_pod_eviction, name, namespace,
                       body, ok_404=True)
        except QueueError as e:
            if getattr(e, "status", 0) == 429:
                log.info("evict %s/%s refused for now (disruption budget): %s", namespace, name, reason)
                return False
            raise
        return True

    # ---- PreemptionControl ---------------------------------------------------------------

    def _pods_of(self, jid: str) -> list[PodInfo]:
        ns, kind, name = split_job_id(jid)
        apis = self._api()
        docs = _items(self._get_json(f"list pods in {ns}", apis.core.list_namespaced_pod, ns), "PodList")
        pods = [parse_pod(p, self.settings.gpu_resource, f"PodList.items[{i}]") for i, p in enumerate(docs)]
        return [p for p in pods if gang_key(p) == (kind, name) and not p.terminal]

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
                self._call(f"annotate pod {p.namespace}/{p.name}", apis.core.patch_namespaced_pod,
                           p.name, p.namespace, body, ok_404=True)

    def hold(self, job_ids: Sequence[str]) -> None:
        """Suspend the owning batch/v1 Jobs (their pods are deleted, the Jobs stay); evict bare
        pods. Already suspended or gone: success."""
        apis = self._api()
        for jid in job_ids:
            jobs, bare = self._owning_jobs(jid)
            for ns, name in jobs:
                self._call(f"suspend job {ns}/{name}", apis.batch.patch_namespaced_job, name, ns,
                           {"spec": {"suspend": True}}, ok_404=True)
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
                self._call(f"resume job {jns}/{jname}", apis.batch.patch_namespaced_job, jname, jns,
                           {"spec": {"suspend": False}}, ok_404=True)


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
