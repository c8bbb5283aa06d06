"""A stand-in Kubernetes API server: a small threaded HTTP server speaking enough of the real REST
API for burst's KubernetesQueue, backed by in-memory JSON objects.

The REAL ``kubernetes`` client talks to it over HTTP (``Configuration(host="http://127.0.0.1:PORT")``).

Served:

* ``GET /version``
* ``GET /api/v1/pods`` and ``/api/v1/namespaces/{ns}/pods`` (``fieldSelector=spec.nodeName=X``,
  ``labelSelector=k=v,...``), ``GET/PATCH/DELETE /api/v1/namespaces/{ns}/pods/{name}``
* ``POST /api/v1/namespaces/{ns}/pods/{name}/eviction`` (201; 429 while the pod is "protected by
  a PodDisruptionBudget": :meth:`FakeKube.protect`)
* ``GET /api/v1/nodes``, ``GET/PATCH/DELETE /api/v1/nodes/{name}``
* ``GET /apis/batch/v1/jobs``, ``GET/POST /apis/batch/v1/namespaces/{ns}/jobs``,
  ``GET/PATCH/DELETE /apis/batch/v1/namespaces/{ns}/jobs/{name}``. Like the Job controller, a new
  or unsuspended Job gets ``parallelism`` new pending pods from its template (``status.startTime``
  set, reset on resume) and suspending it deletes its active pods. DELETE honours
  ``propagationPolicy`` (default ``Orphan``, as for batch/v1 Jobs). POST answers 409
  AlreadyExists and 422 Invalid as the real server does.
* A PATCH whose body carries ``metadata.resourceVersion`` other than the object's gets 409
  Conflict (optimistic concurrency).

PATCH accepts merge patch and strategic-merge patch (treated as a JSON merge patch, which is the
same for the scalar fields used here) and JSON patch (``add``/``replace``/``remove``). Errors are
``Status`` objects with the real codes (404 NotFound, 405, 415, 429). Every request is recorded in
``calls`` as ``(method, path)`` (watches as ``("WATCH", path)``) and counted in ``counts`` under
the same key, so a test can assert how many LISTs a client made. ``fail_next(n, status)`` makes
the next n non-watch requests fail (5xx tests); ``delay_s`` slows every answer (timeout tests).

Watch (``GET <collection>?watch=true&resourceVersion=N``; ``1``, ``True`` ... too), as the real API server does it:

* One global ``resourceVersion`` (etcd's revision). Every change to an object bumps it and
  appends an ``ADDED``/``MODIFIED``/``DELETED`` event. Changes are found by comparing the objects
  with the last recorded copy (:meth:`FakeKube.sync`), so tests may keep mutating ``pods``,
  ``nodes`` and ``jobs`` in place or directly (as the e2e "scheduler" does): the next request, or
  within ``watch_poll_s`` an open watch, turns that into events. LISTs carry
  ``metadata.resourceVersion``; objects carry their own.
* The stream is chunked newline-delimited JSON ``{"type": ..., "object": ...}`` with the events
  after N that match the namespace and selectors. No N (or ``0``): synthetic ``ADDED`` events for
  what exists, then changes. ``timeoutSeconds`` ends the stream cleanly. With
  ``allowWatchBookmarks=true`` a ``BOOKMARK`` carrying the current version is sent every
  ``bookmark_every_s``.
* Only the last ``watch_window`` events are kept (None: all). Resuming from a version older than
  the oldest kept event, or falling behind one, gets an ``ERROR`` event with a 410 ``Expired``
  Status and the end of the stream; :meth:`FakeKube.compact` forgets the whole history at once.
* :meth:`FakeKube.drop_watches` cuts every open watch connection mid-stream (no final chunk, as a
  dying load balancer does); ``watch_fail_status`` makes new watch requests fail with that HTTP
  status while LIST keeps working. Connections are served concurrently (ThreadingHTTPServer).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]

GPU = "nvidia.com/gpu"


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class PatchTestFailed(ValueError):
    """A JSON patch ``test`` op did not hold: the API server answers 422."""


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                parent.insert(int(last), op["value"]) if op["op"] == "add" else parent.__setitem__(
                    int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "test":
            have = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if have != op["value"]:
                raise PatchTestFailed(f"test of {op['path']} failed: {have!r} != {op['value']!r}")
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last, None)
        else:
            raise ValueError(f"unsupported JSON patch op {op['op']!r}")
    return doc


class FakeKube:
    """In-memory objects plus the HTTP server. Use as a context manager or start()/stop()."""

    def __init__(self, *, watch_window: int | None = None, bookmark_every_s: float = 0.5,
                 watch_poll_s: float = 0.002) -> None:
        self.nodes: dict[str, Obj] = {}
        self.pods: dict[tuple[str, str], Obj] = {}
        self.jobs: dict[tuple[str, str], Obj] = {}
        self.calls: list[tuple[str, str]] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self.protected: set[tuple[str, str]] = set()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified when events are recorded
        self.delay_s = 0.0
        self._fail: list[int] = []
        self._uid = itertools.count(1)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        # ---- watch state (see the module docstring)
        self.rv = 1  # the global resourceVersion (etcd revision, from 1): the last change recorded
        self.events: list[_Event] = []
        self.compacted_rv = 0  # watching from below this version is 410 Gone
        self.watch_window = watch_window
        self.bookmark_every_s = bookmark_every_s
        self.watch_poll_s = watch_poll_s  # how soon in-place changes reach open watches
        self.watch_fail_status: int | None = None
        self.watch_end_at_once = False  # answer 200 and end the stream with no event (a bad proxy)
        self.watch_delay_s = 0.0  # hold each batch of events this long before sending (a slow watch)
        self.open_watches = 0
        self._seen: dict[str, dict[Any, Obj]] = {"pods": {}, "nodes": {}, "jobs": {}}
        self._drop_gen = 0
        self._stopping = threading.Event()
        # PriorityClass name -> value: what the Priority admission plugin puts in a new pod's
        # spec.priority (pods made by the Job controller here)
        self.priority_classes: dict[str, int] = {}
        # called with (method, path) under the lock before a request is served: a test changes
        # the world between a client's read and its write (a race) here
        self.on_request: Callable[[str, str], None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeKube:
        fake = self

        class Handler(_Handler):
            kube = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="fake-kube",
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        # Open watch streams live in their own handler threads, which server.shutdown() does not
        # end: tell them to finish, or a stopped fake would keep streaming.
        self._stopping.set()
        with self.changed:
            self.changed.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.lock:
            self._fail += [status] * n

    def lists(self, path: str) -> int:
        """How many plain GETs (LISTs, for a collection path) were made of ``path``."""
        with self.lock:
            return self.counts[("GET", path)]

    def watches(self, path: str) -> int:
        with self.lock:
            return self.counts[("WATCH", path)]

    def compact(self) -> None:
        """Forget the event history (as etcd compaction does): resuming a watch from any version
        before now gets 410 Gone, and open watches that have not seen every change get it too."""
        with self.changed:
            self.sync()
            self.compacted_rv = self.rv
            self.events.clear()
            self.changed.notify_all()

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream."""
        with self.changed:
            self._drop_gen += 1
            self.changed.notify_all()

    def protect(self, namespace: str, name: str) -> None:
        """Evictions of this pod answer 429 (a PodDisruptionBudget would be violated)."""
        self.protected.add((namespace, name))

    # ---- object builders (tests seed the cluster with these) -------------------------------

    def _meta(self, name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None, created: float | None = None) -> Obj:
        m: Obj = {
            "name": name,
            "uid": f"uid-{next(self._uid)}",
            "resourceVersion": "0",  # set by sync() when the creation is recorded
            "creationTimestamp": ts(created if created is not None else time.time()),
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        }
        if namespace is not None:
            m["namespace"] = namespace
        return m

    def add_node(
        self,
        name: str,
        gpus: int = 8,
        *,
        labels: dict[str, str] | None = None,
        taints: list[Obj] | None = None,
        ready: bool = True,
        unschedulable: bool = False,
        gpu_model: str = "NVIDIA-A100-SXM4-80GB",
    ) -> Obj:
        lab = {"kubernetes.io/hostname": name, **({"nvidia.com/gpu.product": gpu_model} if gpus else {}),
               **(labels or {})}
        node: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": self._meta(name, labels=lab),
            "spec": {"taints": list(taints or []), **({"unschedulable": True} if unschedulable else {})},
            "status": {
                "capacity": {"cpu": "96", "memory": "1Ti", GPU: str(gpus)},
                "allocatable": {"cpu": "96", "memory": "1000Gi", GPU: str(gpus)},
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        with self.lock:
            self.nodes[name] = node
        return node

    def add_pod(
        self,
        name: str,
        namespace: str = "default",
        *,
        gpus: int = 0,
        node: str | None = None,
        phase: str | None = None,
        unschedulable: bool | None = None,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        owner: tuple[str, str] | None = None,  # (kind, name)
        created: float | None = None,
        started: float | None = None,
        priority: int | None = None,
        image: str = "harbor.example/ml/train:1",
        node_selector: dict[str, str] | None = None,
    ) -> Obj:
        res = {"requests": {"cpu": "1", **({GPU: str(gpus)} if gpus else {})},
               "limits": {GPU: str(gpus)} if gpus else {}}
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self._meta(name, namespace, labels, annotations, created),
            "spec": {
                "containers": [{"name": "main", "image": image, "resources": res}],
                "schedulerName": "default-scheduler",
                **({"nodeName": node} if node else {}),
                **({"priority": priority} if priority is not None else {}),
                **({"nodeSelector": node_selector} if node_selector else {}),
            },
            "status": {"phase": phase or ("Running" if node else "Pending"), "conditions": []},
        }
        if owner:
            kind, oname = owner
            api = "batch/v1" if kind == "Job" else "apps/v1" if kind in ("ReplicaSet", "DaemonSet") else "v1"
            pod["metadata"]["ownerReferences"] = [
                {"apiVersion": api, "kind": kind, "name": oname, "uid": f"uid-{kind}-{oname}", "controller": True}
            ]
        if node:
            pod["status"]["conditions"].append({"type": "PodScheduled", "status": "True"})
            if pod["status"]["phase"] == "Running":
                pod["status"]["startTime"] = ts(started if started is not None else time.time())
        elif unschedulable is not False:
            pod["status"]["conditions"].append(
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": f"0/{len(self.nodes)} nodes are available: {len(self.nodes)} Insufficient {GPU}.",
                    "lastTransitionTime": ts(time.time()),
                }
            )
        with self.lock:
            self.pods[(namespace, name)] = pod
        return pod

    def add_job(
        self,
        name: str,
        namespace: str = "default",
        *,
        parallelism: int = 1,
        gpus_per_pod: int = 8,
        suspend: bool = False,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        pods: str = "pending",  # "pending" | "running:<node>,<node>" | "none"
        created: float | None = None,
        started: float | None = None,  # status.startTime (and its running pods' startTime)
        active_deadline_s: int | None = None,  # spec.activeDeadlineSeconds
        priority_class: str | None = None,  # template priorityClassName (see priority_classes)
    ) -> Obj:
        job: Obj = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self._meta(name, namespace, labels, annotations, created),
            "spec": {
                "parallelism": parallelism,
                "completions": parallelism,
                "suspend": suspend,
                "template": {
                    "metadata": {"labels": {"job-name": name, **(labels or {})},
                                 "annotations": dict(annotations or {})},
                    "spec": {"containers": [{"name": "main", "image": "harbor.example/ml/train:1",
                                             "resources": {"limits": {GPU: str(gpus_per_pod)}}}]},
                },
            },
            "status": {},
        }
        if active_deadline_s is not None:
            job["spec"]["activeDeadlineSeconds"] = active_deadline_s
        if priority_class is not None:
            job["spec"]["template"]["spec"]["priorityClassName"] = priority_class
        if not suspend:
            job["status"]["startTime"] = ts(started if started is not None else time.time())
        with self.lock:
            self.jobs[(namespace, name)] = job
            if not suspend and pods != "none":
                self._job_pods(job, pods, started)
        return job

    def _job_pods(self, job: Obj, pods: str = "pending", started: float | None = None) -> None:
        """What the Job controller does: ``parallelism`` pods from the template (with what the
        Priority admission plugin adds: ``spec.priority`` from ``priority_classes``)."""
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        tmpl = job["spec"]["template"]
        tspec = tmpl["spec"]
        res = tspec["containers"][0].get("resources") or {}
        gpus = int((res.get("limits") or {}).get(GPU, (res.get("requests") or {}).get(GPU, "0")))
        nodes = pods.split(":", 1)[1].split(",") if pods.startswith("running:") else []
        pclass = tspec.get("priorityClassName")
        for i in range(job["spec"].get("parallelism", 1)):
            pod = self.add_pod(
                f"{name}-{i}-{next(self._uid)}", ns, gpus=gpus, owner=("Job", name),
                labels=dict((tmpl.get("metadata") or {}).get("labels") or {}),
                annotations=dict((tmpl.get("metadata") or {}).get("annotations") or {}),
                node=nodes[i] if i < len(nodes) else None, started=started,
                priority=self.priority_classes.get(pclass, 0) if pclass else None,
                image=tspec["containers"][0].get("image", ""),
            )
            for k in ("tolerations", "affinity", "nodeSelector", "priorityClassName", "activeDeadlineSeconds"):
                if k in tspec:
                    pod["spec"][k] = copy.deepcopy(tspec[k])

    def pods_of_job(self, namespace: str, name: str) -> list[Obj]:
        with self.lock:
            return [
                p for (ns, _), p in self.pods.items()
                if ns == namespace and any(o["kind"] == "Job" and o["name"] == name
                                           for o in p["metadata"].get("ownerReferences", []))
            ]

    # ---- request handling ------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               content_type: str) -> tuple[int, Obj]:
        with self.lock:
            self.calls.append((method, path))
            self.counts[(method, path)] += 1
            if self._fail:
                code = self._fail.pop(0)
                return code, status(code, "InternalError" if code >= 500 else "Failure", "injected failure")
            if self.on_request is not None:
                self.on_request(method, path)
            self.sync()  # a LIST's resourceVersion covers every change made before it
            code, obj = self._route(method, path, query, body, content_type)
            self.sync()  # a write's answer carries the version of its own change
            # a copy: the answer is serialised after the lock is released
            return code, copy.deepcopy(obj)

    # ---- change recording and watch -------------------------------------------------------

    def sync(self) -> None:
        """Record an event, with a new global resourceVersion, for every object that was added,
        changed or removed since the last call. Cheap enough to call on every request and poll."""
        with self.changed:
            recorded = False
            for kind, store in (("pods", self.pods), ("nodes", self.nodes), ("jobs", self.jobs)):
                seen = self._seen[kind]
                try:
                    current = list(store.items())
                    for key, obj in current:
                        old = seen.get(key)
                        if old is not None and old == obj:
                            continue
                        self.rv += 1
                        if isinstance(obj.get("metadata"), dict):
                            obj["metadata"]["resourceVersion"] = str(self.rv)
                        seen[key] = copy.deepcopy(obj)
                        self._record(kind, "ADDED" if old is None else "MODIFIED", seen[key])
                        recorded = True
                except RuntimeError:  # a test changed an object's size under us (outside the lock)
                    continue  # picked up by the next call
                live = {k for k, _ in current}
                for key in [k for k in seen if k not in live]:
                    gone = seen.pop(key)
                    self.rv += 1
                    if isinstance(gone.get("metadata"), dict):
                        gone["metadata"]["resourceVersion"] = str(self.rv)
                    self._record(kind, "DELETED", gone)
                    recorded = True
            if recorded:
                self.changed.notify_all()

    def _record(self, kind: str, type_: str, obj: Obj) -> None:
        meta = _meta_of(obj)
        self.events.append(_Event(self.rv, kind, meta.get("namespace"), type_, obj))
        if self.watch_window is not None:
            while len(self.events) > self.watch_window:
                self.compacted_rv = self.events.pop(0).rv

    def serve_watch(self, h: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        """Stream watch events for ``path`` to the handler's connection (see the module docstring)."""
        m = (re.fullmatch(r"/api/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<kind>pods)", path)
             or re.fullmatch(r"/api/v1/(?P<kind>nodes)", path)
             or re.fullmatch(r"/apis/batch/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<kind>jobs)", path))
        with self.lock:
            self.calls.append(("WATCH", path))
            self.counts[("WATCH", path)] += 1
        if m is None:
            _send(h, 404, status(404, "NotFound", f"the server could not find the requested resource ({path})"))
            return
        if self.watch_fail_status is not None:
            code = self.watch_fail_status
            _send(h, code, status(code, "InternalError" if code >= 500 else "Failure", "injected watch failure"))
            return
        if self.watch_end_at_once:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        kind = m.group("kind")
        ns = m.groupdict().get("ns") or None
        one = "Pod" if kind == "pods" else "Node" if kind == "nodes" else "Job"
        api = "batch/v1" if kind == "jobs" else "v1"
        q = query.get("resourceVersion", [""])[0]
        try:
            timeout = float(query.get("timeoutSeconds", ["1800"])[0])
            start = int(q) if q not in ("", "0") else None
        except ValueError:
            _send(h, 400, status(400, "BadRequest", f"bad resourceVersion or timeoutSeconds: {q!r}"))
            return
        bookmarks = _flag(query, "allowWatchBookmarks")

        def matches(obj: Obj) -> bool:
            meta = _meta_of(obj)
            return (ns is None or meta.get("namespace") == ns) and bool(self._select([obj], query))

        with self.lock:
            self.sync()
            gen = self._drop_gen
            if start is None:  # "any version": the current state as ADDED events, then changes
                pos = self.rv
                store: dict[Any, Obj] = getattr(self, kind)
                initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in store.values() if matches(o)]
            else:
                pos, initial = start, []
            self.open_watches += 1
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            self._stream(h, kind, pos, initial, matches, timeout, bookmarks, gen, one, api)
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True  # the client went away
        finally:
            with self.lock:
                self.open_watches -= 1

    def _stream(self, h: BaseHTTPRequestHandler, kind: str, pos: int, out: list[Obj],
                matches: Callable[[Obj], bool], timeout: float, bookmarks: bool, gen: int, one: str, api: str) -> None:
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        while True:
            end = dropped = False
            with self.changed:
                if not out:
                    self.sync()
                if self._stopping.is_set():
                    end = True
                elif gen != self._drop_gen:
                    dropped = True
                elif pos < self.compacted_rv:
                    out.append({"type": "ERROR", "object": status(
                        410, "Expired", f"too old resource version: {pos} ({self.compacted_rv})")})
                    end = True
                else:
                    out += [{"type": e.type, "object": copy.deepcopy(e.obj)} for e in self.events
                            if e.rv > pos and e.kind == kind and matches(e.obj)]
                    pos = self.rv
                    now = time.monotonic()
                    if bookmarks and now - last_bookmark >= self.bookmark_every_s:
                        out.append({"type": "BOOKMARK", "object": {
                            "kind": one, "apiVersion": api, "metadata": {"resourceVersion": str(pos)}}})
                        last_bookmark = now
                    if not out:
                        if now >= deadline:
                            end = True
                        else:
                            self.changed.wait(min(self.watch_poll_s, max(0.0, deadline - now)))
            if dropped:
                # no final chunk: the client sees the connection die mid-stream
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if self.watch_delay_s and any(ev["type"] != "BOOKMARK" for ev in out):
                time.sleep(self.watch_delay_s)
            for ev in out:
                data = json.dumps(ev).encode() + b"\n"
                h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            if out:
                h.wfile.flush()
            out = []
            if end:
                h.wfile.write(b"0\r\n\r\n")
                h.wfile.flush()
                return

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               content_type: str) -> tuple[int, Obj]:
        if path == "/version" and method == "GET":
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"}
        m = re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/pods", path)
        if m and method == "GET":
            ns = m.group(1)
            items = [p for (pns, _), p in self.pods.items() if ns is None or pns == ns]
            return 200, lst("PodList", self._select(items, query), rv=self.rv)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)(/eviction)?", path)
        if m:
            key = (m.group(1), m.group(2))
            pod = self.pods.get(key)
            if pod is None:
                return 404, status(404, "NotFound", f'pods "{key[1]}" not found')
            if m.group(3):
                if method != "POST":
                    return 405, status(405, "MethodNotAllowed", "eviction is POST only")
                if key in self.protected:
                    return 429, status(429, "TooManyRequests",
                                       "Cannot evict pod as it would violate the pod's disruption budget.")
                del self.pods[key]
                return 201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}
            if method == "GET":
                return 200, pod
            if method == "DELETE":
                del self.pods[key]
                return 200, pod
            if method == "PATCH":
                return self._patch(self.pods, key, body, content_type)
        m = re.fullmatch(r"/api/v1/nodes(?:/([^/]+))?", path)
        if m:
            name = m.group(1)
            if name is None:
                if method == "GET":
                    return 200, lst("NodeList", self._select(list(self.nodes.values()), query), rv=self.rv)
                return 405, status(405, "MethodNotAllowed", method)
            node = self.nodes.get(name)
            if node is None:
                return 404, status(404, "NotFound", f'nodes "{name}" not found')
            if method == "GET":
                return 200, node
            if method == "DELETE":
                del self.nodes[name]
                return 200, status(200, "", "deleted", ok=True)
            if method == "PATCH":
                return self._patch(self.nodes, name, body, content_type)
        m = re.fullmatch(r"/apis/batch/v1(?:/namespaces/([^/]+))?/jobs(?:/([^/]+))?", path)
        if m:
            ns, name = m.group(1), m.group(2)
            if name is None and method == "GET":
                items = [j for (jns, _), j in self.jobs.items() if ns is None or jns == ns]
                return 200, lst("JobList", self._select(items, query), "batch/v1", rv=self.rv)
            if name is None and method == "POST" and ns is not None:
                return self._create_job(ns, body)
            if ns is None or name is None:
                return 405, status(405, "MethodNotAllowed", method)
            job = self.jobs.get((ns, name))
            if job is None:
                return 404, status(404, "NotFound", f'jobs.batch "{name}" not found')
            if method == "GET":
                return 200, job
            if method == "DELETE":
                return self._delete_job(ns, name, query, body)
            if method == "PATCH":
                was = bool(job["spec"].get("suspend"))
                code, new = self._patch(self.jobs, (ns, name), body, content_type)
                now = bool(new.get("spec", {}).get("suspend"))
                if code == 200 and now and not was:  # the Job controller deletes active pods
                    for p in self.pods_of_job(ns, name):
                        del self.pods[(ns, p["metadata"]["name"])]
                elif code == 200 and was and not now:  # ... and recreates them on resume
                    new.setdefault("status", {})["startTime"] = ts(time.time())  # reset on resume
                    self._job_pods(new)
                return code, new
        return 404, status(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _create_job(self, ns: str, body: Any) -> tuple[int, Obj]:
        """POST a Job: 201 with the stored object; 409 AlreadyExists; 422 Invalid (the checks the
        real validation makes on what burst sends: a name, a template with containers, a
        restartPolicy of Never or OnFailure). Then, as the Job controller, its pods."""
        if not isinstance(body, dict) or body.get("kind", "Job") != "Job":
            return 400, status(400, "BadRequest", "the body is not a Job")
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if meta.get("namespace", ns) != ns:
            return 400, status(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                                  "sent on the request")
        tspec = ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
        problems = []
        if not name:
            problems.append("metadata.name: Required value: name or generateName is required")
        if not tspec.get("containers"):
            problems.append("spec.template.spec.containers: Required value")
        if tspec.get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append('spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"')
        if problems:
            return 422, status(422, "Invalid", f'Job.batch "{name or ""}" is invalid: ' + ", ".join(problems))
        if (ns, name) in self.jobs:
            return 409, status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
        job = copy.deepcopy(body)
        job["apiVersion"], job["kind"] = "batch/v1", "Job"
        job["metadata"] = {**self._meta(name, ns, meta.get("labels"), meta.get("annotations")),
                           **{k: v for k, v in meta.items() if k not in ("labels", "annotations")}}
        job["metadata"]["namespace"] = ns
        spec = job.setdefault("spec", {})
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", spec["parallelism"])
        spec.setdefault("suspend", False)
        job["status"] = {}
        self.jobs[(ns, name)] = job
        if not spec["suspend"]:
            job["status"]["startTime"] = ts(time.time())
            self._job_pods(job)
        return 201, job

    def _delete_job(self, ns: str, name: str, query: dict[str, list[str]], body: Any) -> tuple[int, Obj]:
        """DELETE a Job. ``propagationPolicy`` (query or DeleteOptions body) ``Background`` or
        ``Foreground``: its pods are deleted too (here at once; the real garbage collector does
        it shortly after, and Foreground keeps the Job until then); ``Orphan``, the default for
        batch/v1 Jobs, leaves the pods without their owner reference."""
        policy = query.get("propagationPolicy", [""])[0] or (body or {}).get("propagationPolicy") or "Orphan"
        if policy not in ("Orphan", "Background", "Foreground"):
            return 400, status(400, "BadRequest", f"unknown propagationPolicy {policy!r}")
        job = self.jobs.pop((ns, name))
        for p in self.pods_of_job(ns, name):
            if policy == "Orphan":
                p["metadata"]["ownerReferences"] = [o for o in p["metadata"].get("ownerReferences", [])
                                                    if not (o["kind"] == "Job" and o["name"] == name)]
            else:
                del self.pods[(ns, p["metadata"]["name"])]
        out = status(200, "", "deleted", ok=True)
        out["details"] = {"name": name, "group": "batch", "kind": "jobs", "uid": job["metadata"]["uid"]}
        return 200, out

    def _patch(self, store: dict[Any, Obj], key: Any, body: Any, content_type: str) -> tuple[int, Obj]:
        ct = content_type.split(";")[0].strip()
        want = ((body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None)
        have = store[key].get("metadata", {}).get("resourceVersion")
        if want is not None and want != have:
            # optimistic concurrency, as the API server does with a resourceVersion in the patch
            kind = "nodes" if store is self.nodes else "pods" if store is self.pods else "jobs.batch"
            return 409, status(409, "Conflict", f'Operation cannot be fulfilled on {kind} "{_meta_of(store[key]).get("name")}": '
                                                "the object has been modified; please apply your changes to the latest "
                                                "version and try again")
        if ct == "application/json-patch+json" and isinstance(body, list):
            try:
                new = json_patch(store[key], body)
            except PatchTestFailed as e:
                return 422, status(422, "Invalid", str(e))
        elif ct in ("application/merge-patch+json", "application/strategic-merge-patch+json") and isinstance(
                body, dict):
            new = merge_patch(store[key], body)
        else:
            return 415, status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format ({ct})")
        store[key] = new  # its resourceVersion is set when handle() records the change
        return 200, new

    @staticmethod
    def _select(items: list[Obj], query: dict[str, list[str]]) -> list[Obj]:
        out = items
        for sel in query.get("fieldSelector", []):
            for term in filter(None, sel.split(",")):
                k, _, v = term.partition("=")
                if k == "spec.nodeName":
                    out = [o for o in out if o.get("spec", {}).get("nodeName") == v]
                elif k == "metadata.name":
                    out = [o for o in out if o["metadata"]["name"] == v]
                elif k == "status.phase":
                    out = [o for o in out if o.get("status", {}).get("phase") == v]
        for sel in query.get("labelSelector", []):
            for term in filter(None, sel.split(",")):
                k, _, v = term.partition("=")
                out = [o for o in out if (o["metadata"].get("labels") or {}).get(k) == v]
        return out


def status(code: int, reason: str, message: str, ok: bool = False) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" if ok else "Failure",
            "message": message, "reason": reason, "code": code}


def lst(kind: str, items: list[Obj], api: str = "v1", *, rv: int = 0) -> Obj:
    return {"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": str(rv)},
            "items": copy.deepcopy(items)}


@dataclass(frozen=True, slots=True)
class _Event:
    rv: int
    kind: str  # "pods" | "nodes" | "jobs"
    namespace: str | None
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj


def _flag(query: dict[str, list[str]], name: str) -> bool:
    """A boolean query parameter as the API server reads it (Go's strconv.ParseBool; the Python
    client sends ``True``)."""
    return query.get(name, [""])[0] in ("1", "t", "T", "true", "TRUE", "True")


def _meta_of(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _send(h: BaseHTTPRequestHandler, code: int, obj: Obj) -> None:
    data = json.dumps(obj).encode()
    try:
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _do(self) -> None:
        if self.kube._stopping.is_set():
            # a stopped server answers nothing, also on connections the client kept alive
            # (server.shutdown() only stops accepting new ones)
            self.close_connection = True
            return
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            self._send(400, status(400, "BadRequest", "invalid JSON body"))
            return
        if self.kube.delay_s:
            time.sleep(self.kube.delay_s)
        query = parse_qs(url.query)
        if self.command == "GET" and _flag(query, "watch"):
            self.kube.serve_watch(self, url.path, query)
            return
        code, obj = self.kube.handle(self.command, url.path, query, body, self.headers.get("Content-Type", ""))
        self._send(code, obj)

    def _send(self, code: int, obj: Obj) -> None:
        _send(self, code, obj)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _do


@contextmanager
def fake_kube() -> Iterator[FakeKube]:
    k = FakeKube().start()
    try:
        yield k
    finally:
        k.stop()
