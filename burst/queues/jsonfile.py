"""A queue read from a JSON document on disk: for sites whose scheduler burst does not speak
natively (a sidecar exports the queue), and for crash tests where the queue must outlive the
controller process.

Document::

    {"pending": [{"id": "j1", "gpus": 8, "submit_time": 1700000000.0, "gpus_per_node": 8,
                  "nodes": 1, "may_burst": true, "team": "nlp", "owner": "ada", "image": ""}],
     "running": [{"id": "j0", "gpus": 8, "submit_time": ..., "start_time": ..., "node_names": ["n1"]}],
     "nodes":   [{"name": "n1", "gpus": 8, "gpus_used": 8, "schedulable": true,
                  "instance_id": "", "running_jobs": 1, "gpu_model": "A100"}]}

Node operations rewrite the document under an exclusive ``flock`` on ``<path>.lock`` (the
exporter takes the same lock), atomically via a temp file and ``rename``. ``drain_node`` sets
``schedulable: false``; ``remove_node`` deletes the node (absent is success) and refuses while
jobs still run on it.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from burst.domain import Job, JobState, Node, QueueSnapshot
from burst.errors import QueueError, QueueParseError, QueueUnavailable


@contextmanager
def locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_doc(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QueueUnavailable(f"{path}: queue document not found") from None
    except OSError as e:
        raise QueueUnavailable(f"{path}: {e.strerror}") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise QueueParseError(f"{path}:{e.lineno}", f"not valid JSON: {e.msg}") from None
    if not isinstance(doc, dict):
        raise QueueParseError(str(path), "top level must be an object")
    return doc


def write_doc(path: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def update_doc(path: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    """Read-modify-write under the lock (also used by exporters and test harnesses)."""
    with locked(path):
        doc = read_doc(path)
        fn(doc)
        write_doc(path, doc)


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in obj:
        if default is ...:
            raise QueueParseError(where, f"missing field {key!r}")
        return default
    v = obj[key]
    if isinstance(v, bool) and kind in (int, float, (int, float)):
        raise QueueParseError(f"{where}.{key}", f"expected a number, got {v!r}")
    if not isinstance(v, kind):
        raise QueueParseError(f"{where}.{key}", f"expected {getattr(kind, '__name__', kind)}, got {type(v).__name__}")
    return v


def _job(o: Any, where: str, state: JobState) -> Job:
    if not isinstance(o, dict):
        raise QueueParseError(where, "job must be an object")
    gpus = _field(o, "gpus", int, where)
    if gpus < 0:
        raise QueueParseError(f"{where}.gpus", f"must be >= 0, got {gpus}")
    return Job(
        id=str(_field(o, "id", (str, int), where)),
        gpus=gpus,
        submit_time=float(_field(o, "submit_time", (int, float), where)),
        state=state,
        owner=_field(o, "owner", str, where, ""),
        team=_field(o, "team", str, where, ""),
        gpus_per_node=_field(o, "gpus_per_node", int, where, 0),
        nodes=_field(o, "nodes", int, where, 1),
        image=_field(o, "image", str, where, ""),
        may_burst=_field(o, "may_burst", bool, where, True),
        gpu_model=_field(o, "gpu_model", str, where, ""),
        start_time=float(_field(o, "start_time", (int, float), where)) if state is JobState.RUNNING else None,
        node_names=tuple(_field(o, "node_names", list, where, [])),
        reason=_field(o, "reason", str, where, ""),
    )


def _node(o: Any, where: str) -> Node:
    if not isinstance(o, dict):
        raise QueueParseError(where, "node must be an object")
    return Node(
        name=_field(o, "name", str, where),
        gpus=_field(o, "gpus", int, where),
        gpus_used=_field(o, "gpus_used", int, where, 0),
        gpu_model=_field(o, "gpu_model", str, where, ""),
        schedulable=_field(o, "schedulable", bool, where, True),
        instance_id=_field(o, "instance_id", str, where, ""),
        running_jobs=_field(o, "running_jobs", int, where, 0),
    )


def parse_snapshot(doc: dict[str, Any], where: str) -> QueueSnapshot:
    def items(key: str) -> list[Any]:
        v = doc.get(key, [])
        if not isinstance(v, list):
            raise QueueParseError(f"{where}:{key}", "must be a list")
        return v

    pending = tuple(_job(o, f"{where}:pending[{i}]", JobState.PENDING) for i, o in enumerate(items("pending")))
    running = tuple(_job(o, f"{where}:running[{i}]", JobState.RUNNING) for i, o in enumerate(items("running")))
    nodes = tuple(_node(o, f"{where}:nodes[{i}]") for i, o in enumerate(items("nodes")))
    return QueueSnapshot(tuple(sorted(pending, key=lambda j: (j.submit_time, j.id))), running, nodes)


class JsonFileQueue:
    """QueueSource over a JSON document. Reads take the lock too, so no torn snapshot is seen."""

    name = "jsonfile"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def snapshot(self) -> QueueSnapshot:
        with locked(self.path):
            doc = read_doc(self.path)
        return parse_snapshot(doc, str(self.path))

    def _set_schedulable(self, node_name: str, value: bool) -> None:
        def fn(doc: dict[str, Any]) -> None:
            for n in doc.get("nodes", []):
                if n.get("name") == node_name:
                    n["schedulable"] = value

        update_doc(self.path, fn)

    def drain_node(self, node_name: str, reason: str) -> None:
        self._set_schedulable(node_name, False)

    def undrain_node(self, node_name: str, reason: str) -> None:
        self._set_schedulable(node_name, True)

    def remove_node(self, node_name: str) -> None:
        def fn(doc: dict[str, Any]) -> None:
            busy = [j.get("id") for j in doc.get("running", []) if node_name in (j.get("node_names") or [])]
            if busy:
                raise QueueError(f"node {node_name} still runs {', '.join(map(str, busy))}; drain it first")
            doc["nodes"] = [n for n in doc.get("nodes", []) if n.get("name") != node_name]

        update_doc(self.path, fn)
