"""Watch caches for the Kubernetes adapter: one informer (LIST, then WATCH from its
resourceVersion) per resource.

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
  version; for an eviction, a node deletion, a Job suspension (whose pods the Job controller
  deletes) or a Job deletion the next snapshot waits up to ``watch_settle_s`` for the watch to
  show that object changed, and for a Job burst created (a grand challenge's) for the watch to
  show it, then goes on with what it has.
* Never silently stale: if a watcher has been failing for more than ``watch_stale_after_s``,
  ``snapshot`` reads by LIST instead (and raises ``QueueUnavailable`` if that fails too).
* Objects from events are parsed as strictly as from a LIST. A malformed one stays in the cache
  with its error (counted and logged by the watcher, which carries on), and every snapshot raises
  that ``QueueParseError``, naming the object, until the object is fixed or deleted: the same as a
  LIST that returns it.

Writes, and the reads that pick what to write to, never use these caches: the adapter
(:mod:`burst.queues.kubernetes.adapter`) sends them to the API server.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from burst.errors import QueueParseError, QueueUnavailable
from burst.queues.kubernetes.api import Apis, api_message, get_json
from burst.queues.kubernetes.parse import (
    JobInfo,
    Obj,
    PodInfo,
    check_node,
    list_items,
    parse_job,
    parse_pod,
)
from burst.queues.kubernetes.settings import K8sSettings

log = logging.getLogger(__name__)

P = TypeVar("P")


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


class Informer(Generic[P]):
    """A cache of one resource (one namespace, or all), kept current by LIST + WATCH.

    Thread-safety: the watcher thread writes, callers read; every access to the cache takes
    ``_cond``'s lock, and readers get copies (lists of parsed values, which are never mutated).
    Consistency: see the module docstring. The informer holds no reference to the queue, so a
    queue that is dropped without ``close()`` is collected and its finalizer stops the thread.
    """

    def __init__(self, what: str, kind: str, s: K8sSettings, apis: Apis,
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
        self._expect_new: set[str] = set()  # keys a create of ours is expected to add
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
        doc = get_json(self._apis, self._s, f"list {self.what}", self._list_call, *self._args)
        items = list_items(doc, self.kind)
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

    def expect_added(self, key: str) -> None:
        """A create of ours made ``key``: the next :meth:`settle` waits until the cache has it (a
        snapshot must not miss an object burst itself just made, such as a challenge Job)."""
        with self._cond:
            self._expect_new.add(key)

    def settle(self, deadline: float) -> None:
        """Wait until every expected change has been seen, the watcher fails, or ``deadline``
        (monotonic) passes; then forget the expectations (the cache is eventually consistent)."""
        with self._cond:
            while True:
                self._expect = {k: v for k, v in self._expect.items()
                                if (e := self._entries.get(k)) is not None and e.rv == v}
                self._expect_new = {k for k in self._expect_new if k not in self._entries}
                left = deadline - time.monotonic()
                if not (self._expect or self._expect_new) or left <= 0 or self._failing_since is not None:
                    if self._expect or self._expect_new:
                        log.debug("kubernetes watch %s: not seen yet: %s", self.what,
                                  sorted([*self._expect, *self._expect_new]))
                    self._expect.clear()
                    self._expect_new.clear()
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
                    self.last_error = (f"HTTP {getattr(e, 'status', 0)}: {api_message(e)}" if isinstance(e, self._apis.exc)
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
class Informers:
    pods: list[Informer[PodInfo]]
    nodes: Informer[Obj]
    jobs: list[Informer[JobInfo]]
    finalizer: Any = field(default=None, repr=False)

    def all(self) -> list[Informer[Any]]:
        return [*self.pods, self.nodes, *self.jobs]

    def pods_in(self, ns: str) -> Informer[PodInfo] | None:
        return next((i for i in self.pods if i._args in ((ns,), ())), None)

    def jobs_in(self, ns: str) -> Informer[JobInfo] | None:
        return next((i for i in self.jobs if i._args in ((ns,), ())), None)


def make_informers(apis: Apis, s: K8sSettings) -> Informers:
    gpu = s.gpu_resource

    def pod(o: Any, where: str) -> PodInfo:
        return parse_pod(o, gpu, where)

    def node(o: Any, where: str) -> Obj:
        return check_node(o, s, where)

    def job(o: Any, where: str) -> JobInfo:
        return parse_job(o, s, where)

    core, batch = apis.core, apis.batch
    if s.namespaces:
        pods = [Informer(f"pods in {ns}", "PodList", s, apis, core.list_namespaced_pod, core.list_namespaced_pod,
                          (ns,), pod) for ns in s.namespaces]
        jobs = [Informer(f"jobs in {ns}", "JobList", s, apis, batch.list_namespaced_job, batch.list_namespaced_job,
                          (ns,), job) for ns in s.namespaces]
    else:
        pods = [Informer("pods", "PodList", s, apis, core.list_pod_for_all_namespaces,
                          core.list_pod_for_all_namespaces, (), pod)]
        jobs = [Informer("jobs", "JobList", s, apis, batch.list_job_for_all_namespaces,
                          batch.list_job_for_all_namespaces, (), job)]
    nodes: Informer[Obj] = Informer("nodes", "NodeList", s, apis, core.list_node, core.list_node, (), node)
    return Informers(pods, nodes, jobs)


def stop_informers(infs: list[Informer[Any]], timeout: float) -> None:
    for i in infs:
        i.stop()
    for i in infs:
        i.join(timeout)
