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
* ``GET /apis/batch/v1/jobs``, ``/apis/batch/v1/namespaces/{ns}/jobs``,
  ``GET/PATCH /apis/batch/v1/namespaces/{ns}/jobs/{name}``. Like the Job controller, suspending a
  Job deletes its active pods and unsuspending creates ``parallelism`` new pending pods.

PATCH accepts merge patch and strategic-merge patch (treated as a JSON merge patch, which is the
same for the scalar fields used here) and JSON patch (``add``/``replace``/``remove``). Errors are
``Status`` objects with the real codes (404 NotFound, 405, 415, 429). Every request is recorded in
``calls`` as ``(method, path)``. ``fail_next(n, status)`` makes the next n requests fail (5xx
tests); ``delay_s`` slows every answer (timeout tests).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

    def __init__(self) -> None:
        self.nodes: dict[str, Obj] = {}
        self.pods: dict[tuple[str, str], Obj] = {}
        self.jobs: dict[tuple[str, str], Obj] = {}
        self.calls: list[tuple[str, str]] = []
        self.protected: set[tuple[str, str]] = set()
        self.lock = threading.RLock()
        self.delay_s = 0.0
        self._fail: list[int] = []
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

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

    def protect(self, namespace: str, name: str) -> None:
        """Evictions of this pod answer 429 (a PodDisruptionBudget would be violated)."""
        self.protected.add((namespace, name))

    # ---- object builders (tests seed the cluster with these) -------------------------------

    def _meta(self, name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None, created: float | None = None) -> Obj:
        m: Obj = {
            "name": name,
            "uid": f"uid-{next(self._uid)}",
            "resourceVersion": str(next(self._rv)),
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
        with self.lock:
            self.jobs[(namespace, name)] = job
            if not suspend and pods != "none":
                self._job_pods(job, pods)
        return job

    def _job_pods(self, job: Obj, pods: str = "pending") -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        tmpl = job["spec"]["template"]
        gpus = int(tmpl["spec"]["containers"][0]["resources"]["limits"].get(GPU, "0"))
        nodes = pods.split(":", 1)[1].split(",") if pods.startswith("running:") else []
        for i in range(job["spec"].get("parallelism", 1)):
            self.add_pod(
                f"{name}-{i}-{next(self._uid)}", ns, gpus=gpus, owner=("Job", name),
                labels=dict(tmpl["metadata"].get("labels", {})),
                annotations=dict(tmpl["metadata"].get("annotations", {})),
                node=nodes[i] if i < len(nodes) else None,
            )

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
            if self._fail:
                code = self._fail.pop(0)
                return code, status(code, "InternalError" if code >= 500 else "Failure", "injected failure")
            return self._route(method, path, query, body, content_type)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               content_type: str) -> tuple[int, Obj]:
        if path == "/version" and method == "GET":
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"}
        m = re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/pods", path)
        if m and method == "GET":
            ns = m.group(1)
            items = [p for (pns, _), p in self.pods.items() if ns is None or pns == ns]
            return 200, lst("PodList", self._select(items, query))
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
                    return 200, lst("NodeList", self._select(list(self.nodes.values()), query))
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
                return 200, lst("JobList", self._select(items, query), "batch/v1")
            if ns is None or name is None:
                return 405, status(405, "MethodNotAllowed", method)
            job = self.jobs.get((ns, name))
            if job is None:
                return 404, status(404, "NotFound", f'jobs.batch "{name}" not found')
            if method == "GET":
                return 200, job
            if method == "PATCH":
                was = bool(job["spec"].get("suspend"))
                code, new = self._patch(self.jobs, (ns, name), body, content_type)
                now = bool(new.get("spec", {}).get("suspend"))
                if code == 200 and now and not was:  # the Job controller deletes active pods
                    for p in self.pods_of_job(ns, name):
                        del self.pods[(ns, p["metadata"]["name"])]
                elif code == 200 and was and not now:  # ... and recreates them on resume
                    self._job_pods(new)
                return code, new
        return 404, status(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _patch(self, store: dict[Any, Obj], key: Any, body: Any, content_type: str) -> tuple[int, Obj]:
        ct = content_type.split(";")[0].strip()
        if ct == "application/json-patch+json" and isinstance(body, list):
            new = json_patch(store[key], body)
        elif ct in ("application/merge-patch+json", "application/strategic-merge-patch+json") and isinstance(
                body, dict):
            new = merge_patch(store[key], body)
        else:
            return 415, status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format ({ct})")
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        store[key] = new
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


def lst(kind: str, items: list[Obj], api: str = "v1") -> Obj:
    return {"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": "1"}, "items": copy.deepcopy(items)}


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _do(self) -> None:
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
        code, obj = self.kube.handle(self.command, url.path, parse_qs(url.query), body,
                                     self.headers.get("Content-Type", ""))
        self._send(code, obj)

    def _send(self, code: int, obj: Obj) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _do


@contextmanager
def fake_kube() -> Iterator[FakeKube]:
    k = FakeKube().start()
    try:
        yield k
    finally:
        k.stop()
