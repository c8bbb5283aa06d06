"""Kubernetes as burst's on-prem queue, through the official ``kubernetes`` client (lazy import).

:class:`KubernetesQueue` reads pods, nodes and batch/v1 Jobs, from watch caches
(:mod:`burst.queues.kubernetes.informers`) or by LIST, and turns them into a snapshot with the
pure functions of :mod:`burst.queues.kubernetes.parse` (which also states what counts as pending
and running work, nodes and opt-in). API calls go through :mod:`burst.queues.kubernetes.api`.

Writing: ``drain_node`` cordons (``spec.unschedulable=true``) and evicts the node's pods through
the Eviction API (DaemonSet and mirror pods are left; a 429 from a PodDisruptionBudget leaves the
pod for the next call), ``undrain_node`` uncordons, ``remove_node`` deletes the Node (404 is
success). Preemption: ``hold`` suspends the owning batch/v1 Job (``spec.suspend=true``: the Job
controller deletes its pods and keeps the Job), evicts pods another controller owns, and refuses
pods nothing owns (they would be lost); ``release`` unsuspends; ``checkpoint`` annotates the pods
with ``burst.dev/checkpoint-requested-at`` (Kubernetes has no signal API: workloads watch the
annotation through the downward API or the API server, and get SIGTERM with their grace period
when they are held).

Grand challenges (:class:`~burst.ports.ChallengeQueue`): a reservation is a cordon of exactly its
on-prem nodes, marked with annotations so that lifting it uncordons only what it cordoned;
``set_priority`` records a restore priority that only burst reads (Kubernetes has no mutable
per-Job priority); ``submit_challenge`` creates the challenge's Job with node affinity to the
reserved nodes and a toleration of the cordon; ``cancel`` deletes Jobs (background propagation).

The writes themselves, and the reads that pick what to write to (the pods on a node to drain, the
pods of a job to hold), always go to the API server. ``close()`` stops the watchers (the daemon
calls it at shutdown); ``watch: false`` LISTs everything on every snapshot instead.

Errors: a timeout, a refused connection or a 5xx becomes :class:`~burst.errors.QueueUnavailable`;
an object that cannot be read becomes :class:`~burst.errors.QueueParseError` naming the object
and field; other API errors become :class:`~burst.errors.QueueError`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from burst.domain import ChallengeJobKind, GrandChallenge, QueueSnapshot
from burst.errors import QueueError, QueueParseError, QueueUnavailable
from burst.queues.kubernetes.api import Apis, api_call, get_json
from burst.queues.kubernetes.informers import Informer, Informers, make_informers, stop_informers
from burst.queues.kubernetes.parse import (
    CHALLENGE_LABEL,
    DRAIN_REASON_ANNOTATION,
    GANG_TAINT_KEY,
    RESTORE_PRIORITY_ANNOTATION,
    PodInfo,
    as_list,
    as_obj,
    as_strmap,
    as_text,
    assemble,
    challenge_job_body,
    gang_key,
    list_items,
    parse_job,
    parse_pod,
    split_job_id,
)
from burst.queues.kubernetes.settings import K8sSettings
from burst.redact import exception_line

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECKPOINT_ANNOTATION = "burst.dev/checkpoint-requested-at"
# Grand-challenge reservations (create_reservation/delete_reservation): on every reserved node
# the reservation's name, and its window for people reading the node; on the nodes this
# reservation cordoned (and only those), the name again, so that lifting it uncordons exactly
# those and a node cordoned before (by an admin) stays cordoned.
RESERVATION_ANNOTATION = "burst.dev/reservation"
RESERVATION_WINDOW_ANNOTATION = "burst.dev/reservation-window"
RESERVATION_CORDON_ANNOTATION = "burst.dev/reservation-cordoned"
CONFLICT_RETRIES = 5  # re-reads of a node changed between our read and our patch (409)


class NodeNotIdle(QueueError):
    """A drain for idleness found GPU pods on the node (bound since the snapshot): refused."""

    def __init__(self, node_name: str, pods: Sequence[str]) -> None:
        super().__init__(f"node {node_name} is not idle: {', '.join(pods[:5])} run there")
        self.node_name = node_name
        self.pods = tuple(pods)


class KubernetesQueue:
    """:class:`~burst.ports.QueueSource`, :class:`~burst.ports.PreemptionControl` and
    :class:`~burst.ports.ChallengeQueue` on Kubernetes.

    Called from one thread (the controller's); the watcher threads it starts are internal. Call
    :meth:`close` when done with it (idempotent; a later snapshot starts the watchers again)."""

    name = "kubernetes"

    def __init__(self, settings: K8sSettings, api_client: Any | None = None) -> None:
        self.settings = settings
        self._given_client = api_client
        self._apis: Apis | None = None
        self._informers: Informers | None = None
        self._informers_lock = threading.Lock()

    # ---- client (lazy) -------------------------------------------------------------------

    def _api(self) -> Apis:
        if self._apis is not None:
            return self._apis
        from kubernetes import client, config  # lazy: only this adapter needs the SDK

        api_client = self._given_client
        if api_client is None:
            api_client = self._new_client(client, config)
        self._apis = Apis(
            client=api_client,
            core=client.CoreV1Api(api_client),
            batch=client.BatchV1Api(api_client),
            exc=client.exceptions.ApiException,
            v1eviction=client.V1Eviction,
            v1meta=client.V1ObjectMeta,
            v1delete=client.V1DeleteOptions,
        )
        return self._apis

    def _new_client(self, client: Any, config: Any) -> Any:
        """The API client the settings describe. A missing kubeconfig or token file, an unknown
        context, or no service account outside a pod (kubernetes' ``ConfigException``, an
        ``OSError``) becomes :class:`QueueUnavailable` naming what is missing: the tick logs one
        line and does not act, instead of a traceback; the next tick tries again (a mounted token
        can appear later). Nothing is cached on failure."""
        s = self.settings
        try:
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
                return client.ApiClient(conf)
            if s.in_cluster:
                config.load_incluster_config()
                return client.ApiClient()
            return config.new_client_from_config(
                config_file=str(s.kubeconfig) if s.kubeconfig else None, context=s.context
            )
        except (config.ConfigException, OSError) as e:
            how = ("host " + s.host) if s.host else "in-cluster service account" if s.in_cluster else (
                f"kubeconfig {s.kubeconfig or '~/.kube/config'}" + (f" context {s.context}" if s.context else ""))
            raise QueueUnavailable(f"kubernetes client ({how}): {exception_line(e, 300)}") from None

    def _call(self, what: str, fn: Callable[..., T], *args: Any, ok_404: bool = False, **kw: Any) -> T | None:
        return api_call(self._api(), self.settings, what, fn, *args, ok_404=ok_404, **kw)

    def _get_json(self, what: str, fn: Callable[..., Any], *args: Any, ok_404: bool = False, **kw: Any) -> Any:
        return get_json(self._api(), self.settings, what, fn, *args, ok_404=ok_404, **kw)

    def _list_pods(self, field_selector: str | None = None) -> list[PodInfo]:
        apis = self._api()
        kw: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        docs: list[Any] = []
        if self.settings.namespaces:
            for ns in self.settings.namespaces:
                docs += list_items(self._get_json(f"list pods in {ns}", apis.core.list_namespaced_pod, ns, **kw),
                               "PodList")
        else:
            docs = list_items(self._get_json("list pods", apis.core.list_pod_for_all_namespaces, **kw), "PodList")
        return [parse_pod(p, self.settings.gpu_resource, f"PodList.items[{i}]") for i, p in enumerate(docs)]

    def _list_jobs(self) -> list[Any]:
        apis = self._api()
        if self.settings.namespaces:
            out: list[Any] = []
            for ns in self.settings.namespaces:
                out += list_items(self._get_json(f"list jobs in {ns}", apis.batch.list_namespaced_job, ns), "JobList")
            return out
        return list_items(self._get_json("list jobs", apis.batch.list_job_for_all_namespaces), "JobList")

    # ---- watch ---------------------------------------------------------------------------

    def _watching(self) -> Informers:
        """The informers, started (initial LIST of each, then the watcher threads) on first use.
        Raises what a LIST raises; nothing is left running then, and the next call tries again."""
        with self._informers_lock:
            if self._informers is not None:
                return self._informers
            infs = make_informers(self._api(), self.settings)
            for i in infs.all():
                i.sync()
            for i in infs.all():
                i.start()
            # a queue dropped without close() (a test, a one-shot command) stops its watchers
            infs.finalizer = weakref.finalize(self, stop_informers, infs.all(), 0.0)
            self._informers = infs
            return infs

    def close(self) -> None:
        """Stop the watcher threads and wait for them (at most about ``timeout_s``). Idempotent."""
        with self._informers_lock:
            infs, self._informers = self._informers, None
        if infs is not None:
            infs.finalizer.detach()
            stop_informers(infs.all(), self.settings.timeout_s + 1)

    def watch_stats(self) -> dict[str, dict[str, Any]]:
        """Per watched resource: version, objects, events, relists, reconnects, failures, parse
        errors, last error, whether failing and alive. Empty before the first snapshot."""
        infs = self._informers
        return {i.what: i.stats() for i in infs.all()} if infs is not None else {}

    def _remember(self, kind: str, obj: Any) -> None:
        """Read-your-writes: a write's answer into the matching cache (see
        burst.queues.kubernetes.informers)."""
        infs = self._informers
        if infs is None or not isinstance(obj, Mapping):
            return
        ns = as_obj(obj.get("metadata"), "metadata").get("namespace") or ""
        inf: Informer[Any] | None = (infs.nodes if kind == "nodes" else
                                      infs.pods_in(ns) if kind == "pods" else infs.jobs_in(ns))
        if inf is not None:
            inf.remember(obj)

    def _before_write(self, kind: str, ns: str, name: str) -> Callable[[], None]:
        """Note the cached version of an object a write is about to change or delete; the returned
        function, called once the write succeeded, makes the next snapshot wait to see it."""
        infs = self._informers
        inf: Informer[Any] | None = None
        if infs is not None:
            inf = infs.nodes if kind == "nodes" else infs.pods_in(ns) if kind == "pods" else infs.jobs_in(ns)
        if inf is None:
            return lambda: None
        key = f"{ns}/{name}" if ns else name
        version = inf.version_of(key)
        return lambda: inf.expect(key, version)

    # ---- QueueSource ---------------------------------------------------------------------

    def snapshot(self) -> QueueSnapshot:
        """Pending and running jobs and nodes. With ``watch`` (burst.queues.kubernetes.informers) this is
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
        node_docs = list_items(self._get_json("list nodes", apis.core.list_node), "NodeList")  # first: see above
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
        taints = as_list(as_obj(node.get("spec"), f"node {node_name}.spec").get("taints"), f"node {node_name}.spec.taints")
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
        docs = list_items(self._get_json(f"list pods in {ns}", apis.core.list_namespaced_pod, ns), "PodList")
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
        """Suspend the owning batch/v1 Jobs (``spec.suspend=true``: the Job controller deletes
        their active pods, the Jobs stay; resumed by :meth:`release`). Already suspended or gone:
        success.

        A pod that no Job owns cannot be suspended. One that another controller owns (a
        ReplicaSet, a StatefulSet...) is evicted: its owner makes it again, pending (the
        reservation keeps it off the challenge's nodes), so nothing is lost and :meth:`release`
        has nothing to do for it. A pod with no owner (or a static pod) would be gone for good:
        it is refused, after every other job of the call has been held, with a
        :class:`QueueError` naming it (an admin stops it, or cancels the challenge)."""
        apis = self._api()
        refused: list[str] = []
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
                if p.owner_kind in ("", "Node"):
                    refused.append(f"{p.namespace}/{p.name}")
                    continue
                if not self._evict(p.namespace, p.name, f"burst hold {jid}"):
                    raise QueueError(f"hold {jid}: eviction of {p.namespace}/{p.name} refused by a disruption budget")
        if refused:
            raise QueueError(f"cannot hold pod(s) {', '.join(refused)}: no Job or controller owns them, so they "
                             "cannot be suspended, and evicting them would lose them; stop them or cancel the challenge")

    def _jobs_behind(self, jid: str) -> list[tuple[str, str]]:
        """The batch/v1 Jobs (namespace, name) a job id stands for, read from the API server
        (none for a bare pod)."""
        ns, kind, name = split_job_id(jid)
        if kind == "pod":
            return []
        if kind == "job":
            return [(ns, name)]
        jobs = []
        for d in self._list_jobs():
            tmeta = as_obj(as_obj(as_obj(d.get("spec"), "job.spec").get("template"), "template").get("metadata"),
                           "template.metadata")
            tl = as_strmap(tmeta.get("labels"), "template.metadata.labels")
            ta = as_strmap(tmeta.get("annotations"), "template.metadata.annotations")
            meta = as_obj(d.get("metadata"), "job.metadata")
            fake = PodInfo(ns, "", "", tl, ta, "Job", as_text(meta.get("name"), "job.metadata.name"), 0, "",
                           "", False, "", 0.0, None, 0, "", {}, False)
            if meta.get("namespace") == ns and gang_key(fake) == (kind, name):
                jobs.append((ns, fake.owner_name))
        return jobs

    def release(self, job_ids: Sequence[str]) -> None:
        """Unsuspend the owning Jobs, one by one in the order given (the Job controller makes
        their pods in that order). Not suspended, gone, or a bare pod (nothing to bring back):
        success."""
        apis = self._api()
        for jid in job_ids:
            for jns, jname in self._jobs_behind(jid):
                self._remember("jobs", self._get_json(f"resume job {jns}/{jname}", apis.batch.patch_namespaced_job,
                                                      jname, jns, {"spec": {"suspend": False}}, ok_404=True))

    # ---- ChallengeQueue --------------------------------------------------------------------

    def set_priority(self, job_id: str, priority: int) -> None:
        """Record a restore priority on the job's batch/v1 Jobs (annotation
        ``burst.dev/restore-priority``), which burst's snapshot reports as ``Job.priority``.

        Kubernetes has no per-Job numeric priority to change: a pod's priority comes from its
        PriorityClass at creation and is immutable, and the pod template of a Job that has run
        cannot be edited. So this does not change the order in which kube-scheduler places
        pods (it orders by pod priority, then by when a pod entered its queue); it makes burst
        itself (overflow's order of pending work) treat the restored job as the priority says.
        The runner releases preempted jobs one by one in their recorded order, so their new
        pods enter the scheduler's queue in that order. A bare pod has no Job: nothing to do.
        Gone: success."""
        apis = self._api()
        for ns, name in self._jobs_behind(job_id):
            body = {"metadata": {"annotations": {RESTORE_PRIORITY_ANNOTATION: str(int(priority))}}}
            self._remember("jobs", self._get_json(f"set restore priority of job {ns}/{name}",
                                                  apis.batch.patch_namespaced_job, name, ns, body, ok_404=True))

    def _is_burst_node(self, doc: Any) -> bool:
        meta = as_obj(doc.get("metadata"), "node.metadata")
        labels = as_strmap(meta.get("labels"), "node.metadata.labels")
        taints = as_list(as_obj(doc.get("spec"), "node.spec").get("taints"), "node.spec.taints")
        return bool(labels.get(self.settings.instance_id_label)) or any(
            isinstance(t, Mapping) and t.get("key") == self.settings.cloud_taint_key for t in taints)

    def _patch_node_checked(self, node_name: str, doc: Any, make: Callable[[Mapping[str, str], bool], Any]) -> None:
        """Patch a node with ``make(annotations, unschedulable)`` of the version read (``doc``),
        guarded by that resourceVersion: a node changed meanwhile (an admin cordoned it) is read
        again and the patch decided again (409 Conflict), up to CONFLICT_RETRIES times.
        ``make`` returning None: nothing to change."""
        apis = self._api()
        for _ in range(CONFLICT_RETRIES):
            meta = as_obj(doc.get("metadata"), f"node {node_name}.metadata")
            ann = as_strmap(meta.get("annotations"), f"node {node_name}.metadata.annotations")
            cordoned = bool(as_obj(doc.get("spec"), f"node {node_name}.spec").get("unschedulable"))
            body = make(ann, cordoned)
            if body is None:
                return
            body.setdefault("metadata", {})["resourceVersion"] = meta.get("resourceVersion")
            try:
                node = self._get_json(f"patch node {node_name}", apis.core.patch_node, node_name, body, ok_404=True)
            except QueueError as e:
                if getattr(e, "status", 0) != 409:
                    raise
                doc = self._get_json(f"read node {node_name}", apis.core.read_node, node_name, ok_404=True)
                if doc is None:
                    return
                continue
            if node is not None:
                self._remember("nodes", node)
            return
        raise QueueError(f"patch node {node_name}: it kept changing under us ({CONFLICT_RETRIES} conflicts)")

    def create_reservation(self, name: str, start: float | None, duration_s: float, *, nodes: Sequence[str]) -> str:
        """Cordon exactly ``nodes`` (on-prem nodes) for a grand challenge; returns ``name``.

        Every node is checked first, and nothing changes if one is unknown, is a burst node, or
        is in another reservation (QueueError naming it). Then each gets the annotation
        ``burst.dev/reservation=<name>`` (and its window); a node that is schedulable is
        cordoned and marked ``burst.dev/reservation-cordoned=<name>``; one already cordoned (by
        an admin) is only annotated, so :meth:`delete_reservation` leaves it cordoned. Each
        patch is guarded by the node's resourceVersion (a concurrent cordon is seen, not
        overwritten). Idempotent on ``name``.

        A cordon has no start time: nothing new starts on the nodes from now (the drain window),
        including jobs whose time limit would end before ``start`` (stricter than a Slurm
        reservation with IGNORE_JOBS). Pods already running keep running."""
        apis = self._api()
        if not nodes:
            raise QueueError(f"reservation {name}: no nodes given")
        docs: dict[str, Any] = {}
        for n in dict.fromkeys(nodes):
            doc = self._get_json(f"read node {n}", apis.core.read_node, n, ok_404=True)
            if doc is None:
                raise QueueError(f"reservation {name}: no node {n}")
            if self._is_burst_node(doc):
                raise QueueError(f"reservation {name}: {n} is a burst node; only on-prem nodes are reserved")
            ann = as_strmap(as_obj(doc.get("metadata"), f"node {n}.metadata").get("annotations"),
                            f"node {n}.metadata.annotations")
            other = ann.get(RESERVATION_ANNOTATION)
            if other and other != name:
                raise QueueError(f"reservation {name}: node {n} is in reservation {other}")
            docs[n] = doc
        end = (start if start is not None else time.time()) + duration_s
        window = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start or time.time()))}/" \
                 f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end))}"

        def reserve(ann: Mapping[str, str], cordoned: bool) -> Any:
            ours = ann.get(RESERVATION_CORDON_ANNOTATION) == name
            if ann.get(RESERVATION_ANNOTATION) == name and (not ours or cordoned):
                return None  # done already (a cordon of ours that an admin lifted is put back)
            body: dict[str, Any] = {"metadata": {"annotations": {RESERVATION_ANNOTATION: name,
                                                                 RESERVATION_WINDOW_ANNOTATION: window}}}
            if not cordoned or ours:
                body["spec"] = {"unschedulable": True}
                body["metadata"]["annotations"][RESERVATION_CORDON_ANNOTATION] = name
            return body

        for n, doc in docs.items():
            self._patch_node_checked(n, doc, reserve)
        return name

    def delete_reservation(self, name: str) -> None:
        """Lift reservation ``name``: remove its annotations from its nodes and uncordon those it
        cordoned (a node cordoned before it stays cordoned). None left: success.

        A node an admin cordons *during* the challenge cannot be told from the reservation's
        cordon (Kubernetes keeps one flag): it is uncordoned with the rest."""
        apis = self._api()
        docs = list_items(self._get_json("list nodes", apis.core.list_node), "NodeList")

        def lift(ann: Mapping[str, str], cordoned: bool) -> Any:
            if ann.get(RESERVATION_ANNOTATION) != name and ann.get(RESERVATION_CORDON_ANNOTATION) != name:
                return None
            body: dict[str, Any] = {"metadata": {"annotations": {
                RESERVATION_ANNOTATION: None, RESERVATION_WINDOW_ANNOTATION: None, RESERVATION_CORDON_ANNOTATION: None}}}
            if ann.get(RESERVATION_CORDON_ANNOTATION) == name and cordoned:
                body["spec"] = {"unschedulable": None}
            return body

        for i, doc in enumerate(docs):
            meta = as_obj(as_obj(doc, f"NodeList.items[{i}]").get("metadata"), f"NodeList.items[{i}].metadata")
            ann = as_strmap(meta.get("annotations"), f"NodeList.items[{i}].metadata.annotations")
            if name in (ann.get(RESERVATION_ANNOTATION), ann.get(RESERVATION_CORDON_ANNOTATION)):
                self._patch_node_checked(as_text(meta.get("name"), f"NodeList.items[{i}].metadata.name"), doc, lift)

    def submit_challenge(self, gc: GrandChallenge, *, name: str, reservation: str, nodes: Sequence[str]) -> str:
        """Create the challenge's batch/v1 Job from ``gc.job_text`` as Job ``name`` in the
        challenge namespace (``challenge_namespace``), placed on the reservation's nodes (see
        :func:`burst.queues.kubernetes.parse.challenge_job_body`), with the challenge's duration
        as ``activeDeadlineSeconds``. Returns its job id ``<namespace>/job/<name>``.

        Of ``nodes``, those cordoned by someone else before the reservation are left out (an
        admin's cordon means "not this node"). Idempotent: a Job ``name`` that exists and
        carries this challenge's label is returned (409 AlreadyExists), never made again; one
        that does not carry it is a QueueError. A challenge that is not a Kubernetes one, a bad
        manifest (named), or no usable node: QueueError."""
        if gc.job_kind is not ChallengeJobKind.KUBERNETES:
            raise QueueError(f"challenge {gc.id}: its job is a {gc.job_kind} job; this queue runs Kubernetes Jobs")
        apis = self._api()
        usable = []
        for n in dict.fromkeys(nodes):
            doc = self._get_json(f"read node {n}", apis.core.read_node, n, ok_404=True)
            if doc is None:
                continue
            ann = as_strmap(as_obj(doc.get("metadata"), f"node {n}.metadata").get("annotations"),
                            f"node {n}.metadata.annotations")
            cordoned = bool(as_obj(doc.get("spec"), f"node {n}.spec").get("unschedulable"))
            if cordoned and ann.get(RESERVATION_CORDON_ANNOTATION) != reservation:
                log.info("challenge %s: node %s was cordoned before reservation %s; not used", gc.id, n, reservation)
                continue
            usable.append(n)
        if not usable:
            raise QueueError(f"challenge {gc.id}: none of its {len(nodes)} node(s) can take it "
                             f"(unknown, or cordoned before reservation {reservation})")
        ns = self.settings.challenge_ns
        body = challenge_job_body(gc.job_text, name=name, namespace=ns, challenge_id=gc.id, nodes=usable,
                                  duration_s=gc.duration_s)
        jid = f"{ns}/job/{name}"
        try:
            self._get_json(f"create job {ns}/{name}", apis.batch.create_namespaced_job, ns, body)
        except QueueError as e:
            if getattr(e, "status", 0) != 409:
                raise
            have = self._get_json(f"read job {ns}/{name}", apis.batch.read_namespaced_job, name, ns, ok_404=True)
            if have is None:
                raise QueueUnavailable(f"kubernetes create job {ns}/{name}: exists and is gone; try again") from None
            labels = as_strmap(as_obj(have.get("metadata"), "job.metadata").get("labels"), "job.metadata.labels")
            if labels.get(CHALLENGE_LABEL) != gc.id:
                raise QueueError(f"challenge {gc.id}: a Job {ns}/{name} exists that is not this challenge's") from None
            return jid
        infs = self._informers
        inf = infs.jobs_in(ns) if infs is not None else None
        if inf is not None:
            inf.expect_added(f"{ns}/{name}")  # the next snapshot shows the Job burst just made
        return jid

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Delete the Jobs behind each id (a bare pod: the pod) with ``propagationPolicy:
        Background`` (the garbage collector deletes their pods; the API's default for batch/v1
        Jobs is to orphan them). Gone: success."""
        apis = self._api()
        for jid in job_ids:
            ns, kind, name = split_job_id(jid)
            if kind == "pod":
                seen = self._before_write("pods", ns, name)
                self._call(f"delete pod {ns}/{name}", apis.core.delete_namespaced_pod, name, ns, ok_404=True)
                seen()
                continue
            for jns, jname in self._jobs_behind(jid):
                seen = self._before_write("jobs", jns, jname)
                self._call(f"delete job {jns}/{jname}", apis.batch.delete_namespaced_job, jname, jns,
                           propagation_policy="Background", ok_404=True)
                seen()
