"""Prometheus metrics and health endpoints of the live controller (``burst run --metrics-port``).

One HTTP server on the metrics port (``--metrics-addr``, default 127.0.0.1; use 0.0.0.0 in a
container) answers three paths, GET (and HEAD) only:

* ``/metrics``: the Prometheus exposition of this process's registry (text format, or OpenMetrics
  when the scraper asks for it);
* ``/healthz``: 200 ``ok`` while the process lives and serves HTTP (a liveness probe);
* ``/readyz``: 200 ``ready: leader`` or ``ready: standby`` when the controller is the leader or a
  standby that could take over: the store answered and the queue was read successfully within
  the last :data:`burst.daemon.READY_TICKS` (3) ticks, and a tick started recently; otherwise 503
  ``not ready: <why>`` (no tick yet, store unreachable, queue unreadable, stopping). See
  :meth:`burst.daemon.Daemon.readiness`.

Any other path is 404. prometheus-client's own ``start_http_server`` answers every path with
the metrics, so the server here is a small handler of our own around its encoders.

One registry per process; the daemon calls :func:`observe_tick` after every tick. Names follow
Prometheus conventions (``_total`` counters, base units). Nothing here is needed by the
simulator, which reports its own figures.

Grand challenges (from ``TickResult.challenges``):

* ``burst_grand_challenge_phase{challenge="gc-...", phase="..."}``: 1 for the phase the challenge
  is in after the tick, 0 for its other phases (every phase of ``ChallengeState`` is exported, so
  ``burst_grand_challenge_phase{phase="restoring"} == 1`` finds the challenges restoring). A
  challenge's series are removed one tick after it reached a final phase (done, cancelled,
  failed), so finished challenges do not pile up.
* ``burst_grand_challenge_jobs_preempted_total``: jobs recorded as preempted (the set written
  before the first checkpoint signal);
* ``burst_grand_challenge_jobs_restored_total``: preempted jobs confirmed pending or running
  again (or gone) after their release.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from burst.controller import TickResult
from burst.domain import CHALLENGE_TERMINAL, ChallengeState, CloudInstance, LaunchSpec
from burst.ports import Mirror, MirrorResult, Provider
from policies import Snapshot

REGISTRY = CollectorRegistry()

TICKS = Counter("burst_ticks_total", "Controller ticks, by outcome", ["outcome"], registry=REGISTRY)
TICK_SECONDS = Histogram(
    "burst_tick_duration_seconds", "Wall time of one tick", registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ACTIONS = Counter("burst_actions_total", "Plan actions decided, by kind", ["kind"], registry=REGISTRY)
LAUNCH_FAILURES = Counter("burst_launch_failures_total", "Launches refused by a cloud", registry=REGISTRY)
EXEC_ERRORS = Counter("burst_execution_errors_total", "Errors while carrying out a plan", registry=REGISTRY)
ORPHANS = Counter("burst_orphans_terminated_total", "Tagged instances unknown to the store, terminated", registry=REGISTRY)
PENDING = Gauge("burst_pending_jobs", "Pending jobs in the on-prem queue", registry=REGISTRY)
INSTANCES = Gauge("burst_live_instances", "burst instances not yet terminated", ["state"], registry=REGISTRY)
CLOUD_GPUS = Gauge("burst_cloud_gpus", "GPUs of live burst instances", registry=REGISTRY)
HOURLY_USD = Gauge("burst_cloud_usd_per_hour", "Hourly price of the live burst fleet", registry=REGISTRY)
LEADER = Gauge("burst_leader", "1 while this process holds the controller lease", registry=REGISTRY)
GC_PHASE = Gauge("burst_grand_challenge_phase", "1 for the phase each grand challenge is in, 0 for its other phases",
                 ["challenge", "phase"], registry=REGISTRY)
GC_PREEMPTED = Counter("burst_grand_challenge_jobs_preempted", "Jobs preempted by grand challenges", registry=REGISTRY)
GC_RESTORED = Counter("burst_grand_challenge_jobs_restored", "Preempted jobs confirmed back in the queue",
                      registry=REGISTRY)
_PHASES = tuple(str(s) for s in ChallengeState)
_FINAL = frozenset(str(s) for s in CHALLENGE_TERMINAL)
_gc_final: set[str] = set()  # challenges whose final phase was exported on the previous tick


Readiness = Callable[[], tuple[bool, str]]


def _handler(ready: Readiness | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "burst"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(body=False)

        def _answer(self, *, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                # Content negotiation as prometheus-client's own server does it (OpenMetrics or
                # the text format, by the scraper's Accept header).
                encoder, ctype = choose_encoder(self.headers.get("Accept") or "")
                code, data = 200, encoder(REGISTRY)
            elif path == "/healthz":
                code, ctype, data = 200, "text/plain; charset=utf-8", b"ok\n"
            elif path == "/readyz":
                ok, why = ready() if ready is not None else (False, "no controller")
                code = 200 if ok else 503
                ctype, data = "text/plain; charset=utf-8", f"{'ready' if ok else 'not ready'}: {why}\n".encode()
            else:
                code, ctype, data = 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
            pass  # probes every few seconds would drown the controller's own log

    return Handler


def serve(port: int, addr: str = "127.0.0.1", *, ready: Readiness | None = None) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``addr:port`` from a daemon thread
    (port 0 picks a free one: ``server.server_address``). ``ready``: the daemon's
    :meth:`~burst.daemon.Daemon.readiness`. Returns the server (``shutdown()`` stops it)."""
    server = ThreadingHTTPServer((addr, port), _handler(ready))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="burst-metrics", daemon=True).start()
    return server


def observe_tick(res: TickResult | None, seconds: float, leader: bool) -> None:
    LEADER.set(1 if leader else 0)
    if res is None:
        TICKS.labels("standby" if not leader else "failed").inc()
        return
    TICKS.labels("skipped" if res.skipped else "acted").inc()
    TICK_SECONDS.observe(seconds)
    for a in res.plan.actions:
        ACTIONS.labels(type(a).__name__).inc()
    LAUNCH_FAILURES.inc(len(res.executed.failed))
    EXEC_ERRORS.inc(len(res.executed.errors))
    ORPHANS.inc(len(res.orphans_terminated))
    if res.challenges is not None:
        observe_challenges(res.challenges.phases, res.challenges.preempted, res.challenges.restored)
    snap = res.snapshot
    if snap is None:
        return
    PENDING.set(len(snap.pending))
    by_state: dict[str, int] = {}
    for i in snap.instances:
        by_state[str(i.state)] = by_state.get(str(i.state), 0) + 1
    for state in ("planned", "launching", "running", "joined", "draining", "terminating"):
        INSTANCES.labels(state).set(by_state.get(state, 0))
    CLOUD_GPUS.set(sum(i.gpus for i in snap.instances))
    HOURLY_USD.set(sum(i.price_per_hour for i in snap.instances))
    observe_fleet(snap)



def observe_challenges(phases: dict[str, str], preempted: int, restored: int) -> None:
    """Export one run of the grand-challenge runner (``ChallengeRunResult``)."""
    GC_PREEMPTED.inc(preempted)
    GC_RESTORED.inc(restored)
    for cid in _gc_final - set(phases):
        for phase in _PHASES:
            try:
                GC_PHASE.remove(cid, phase)
            except KeyError:
                pass
    _gc_final.clear()
    for cid, now in phases.items():
        for phase in _PHASES:
            GC_PHASE.labels(cid, phase).set(1 if phase == now else 0)
        if now in _FINAL:
            _gc_final.add(cid)


# ---- dashboard metrics (deploy/grafana/burst.json) ------------------------------------------------
# Demand, fleet by state/cloud/purpose, spend against each cap and the learnt boot time come from
# the tick's snapshot (observe_fleet, called by observe_tick). Launch attempts and errors by
# class, and mirror copies, are counted where they happen: the wiring hands the controller each
# Provider and the mirror wrapped in MeteredProvider / MeteredMirror.
PENDING_GPUS = Gauge("burst_pending_gpus", "GPUs requested by pending jobs, by whether they may burst",
                     ["may_burst"], registry=REGISTRY)
FLEET = Gauge("burst_instances", "burst instances not yet terminated", ["state", "cloud", "purpose"], registry=REGISTRY)
SPEND = Gauge("burst_spend_usd", "Spent or committed in the current budget period", ["budget"], registry=REGISTRY)
BUDGET_CAP = Gauge("burst_budget_cap_usd", "Budget cap of the period (0: no cap)", ["budget"], registry=REGISTRY)
BUDGET_BLOCKED = Gauge(
    "burst_budget_blocked",
    "1 while a budget's hard cap holds new launches back (running work continues), else 0",
    ["budget"], registry=REGISTRY,
)
BOOT_ESTIMATE = Gauge("burst_boot_estimate_seconds",
                      "Learnt launch-to-joined time of recent instances (absent until one has joined)",
                      registry=REGISTRY)
LAUNCH_ATTEMPTS = Counter("burst_launch_attempts", "Launch calls made to a cloud", ["cloud"], registry=REGISTRY)
LAUNCH_ERRORS = Counter("burst_launch_errors", "Launch calls that raised, by cloud and error class",
                        ["cloud", "error_class"], registry=REGISTRY)
MIRROR_BYTES = Counter("burst_mirror_bytes", "Bytes uploaded to cloud registries by image copies", ["cloud"],
                       registry=REGISTRY)
MIRROR_SECONDS = Histogram("burst_mirror_copy_duration_seconds", "Wall time of one image copy (present images too)",
                           ["cloud"], registry=REGISTRY, buckets=(0.5, 2, 5, 15, 30, 60, 120, 300, 600, 1800))
MIRROR_ERRORS = Counter("burst_mirror_errors", "Image copies that failed, by cloud and error class",
                        ["cloud", "error_class"], registry=REGISTRY)


def observe_fleet(snap: Snapshot) -> None:
    """The dashboard's view of one snapshot. Series of combinations gone since the last tick are
    dropped (an instance state no instance is in is absent, not a stale number)."""
    demand = {"true": 0, "false": 0}
    for j in snap.pending:
        demand["true" if j.may_burst else "false"] += j.gpus
    for k, v in demand.items():
        PENDING_GPUS.labels(k).set(v)
    counts: dict[tuple[str, str, str], int] = {}
    for i in snap.instances:
        key = (str(i.state), i.cloud, str(i.purpose))
        counts[key] = counts.get(key, 0) + 1
    FLEET.clear()
    for key, n in counts.items():
        FLEET.labels(*key).set(n)
    s = snap.spend
    for budget, spent, cap in (("month", s.month_usd, s.month_cap_usd), ("day", s.day_usd, s.day_cap_usd)):
        SPEND.labels(budget).set(spent)
        BUDGET_CAP.labels(budget).set(cap)
    if snap.boot_estimate_s is not None:
        BOOT_ESTIMATE.set(snap.boot_estimate_s)


def observe_budgets(states: Sequence[tuple[str, float, float, bool]]) -> None:
    """Each site and team budget as ``(name, committed, hard cap, blocked)`` (``site:month``,
    ``team:<team>:day``...; committed: spent plus what live instances are projected to cost;
    blocked: its hard cap holds launches back). Budgets no longer set are dropped from
    ``burst_budget_blocked``."""
    BUDGET_BLOCKED.clear()
    for name, committed, cap, blocked in states:
        SPEND.labels(name).set(committed)
        BUDGET_CAP.labels(name).set(cap)
        BUDGET_BLOCKED.labels(name).set(1.0 if blocked else 0.0)


class MeteredProvider:
    """A :class:`~burst.ports.Provider` that counts launch calls and their errors by class
    (``CapacityError``, ``QuotaError``, ``TransientProviderError``, ...). Behaviour unchanged:
    every call and every exception passes through."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name

    def launch(self, spec: LaunchSpec) -> CloudInstance:
        LAUNCH_ATTEMPTS.labels(self.name).inc()
        try:
            return self.inner.launch(spec)
        except Exception as e:
            LAUNCH_ERRORS.labels(self.name, type(e).__name__).inc()
            raise

    def list_instances(self) -> Sequence[CloudInstance]:
        return self.inner.list_instances()

    def find(self, intent_id: str) -> CloudInstance | None:
        return self.inner.find(intent_id)

    def terminate(self, cloud_ids: Sequence[str]) -> None:
        self.inner.terminate(cloud_ids)


class MeteredMirror:
    """A :class:`~burst.ports.Mirror` that counts bytes uploaded, copy time and failures per cloud."""

    def __init__(self, inner: Mirror) -> None:
        self.inner = inner

    def target_for(self, image: str, cloud: str, region: str) -> str:
        return self.inner.target_for(image, cloud, region)

    def ensure(self, image: str, cloud: str, region: str) -> MirrorResult:
        t0 = time.perf_counter()
        try:
            out = self.inner.ensure(image, cloud, region)
        except Exception as e:
            MIRROR_ERRORS.labels(cloud, type(e).__name__).inc()
            raise
        finally:
            MIRROR_SECONDS.labels(cloud).observe(time.perf_counter() - t0)
        MIRROR_BYTES.labels(cloud).inc(out.bytes_uploaded)
        return out
