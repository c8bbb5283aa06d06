"""Grand challenges as admins touch them, from Slack and from the CLI: schedule, list, show,
cancel, and the impact a challenge would have. One path for both surfaces:

* scheduling is :func:`burst.grand_challenge.schedule_challenge` (its validation, its audit row);
* cancelling is :func:`burst.grand_challenge.request_cancel` (any phase; after draining the
  runner restores every preempted job on its next tick);
* the impact is :func:`policies.grand_challenge.challenge_impact` over the live queue.

The lifecycle itself (notices, reservation, checkpoint, hold, restore) is the runner's, inside
``Controller.tick``; nothing here touches the cluster.

The live queue: the CLI asks the configured queue directly; the Slack bot, which never talks to
the scheduler, reads what the controller recorded on its last tick (:func:`record_queue`, written
by ``burst/daemon.py`` into the controller status; bounded in size).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from burst.domain import (
    CHALLENGE_ACTIVE,
    ChallengeJobKind,
    ChallengeState,
    GrandChallenge,
    Job,
    JobState,
    Node,
    Offer,
    QueueSnapshot,
    Timestamp,
)
from burst.errors import InputError
from burst.grand_challenge import read_job_spec, request_cancel, schedule_challenge
from burst.ports import Notifier, Store
from policies.grand_challenge import (
    ANNOUNCE,
    ChallengeSettings,
    Impact,
    challenge_impact,
    fmt_time,
    validate_challenge,
)

CHALLENGE_ID = re.compile(r"^gc-[0-9a-f]{6}$")

# Bounds of what a tick records for the impact (the controller status row is rewritten each tick).
MAX_RECORDED_JOBS = 2000
MAX_RECORDED_NODES = 4096
MAX_NODES_PER_JOB = 64


# ---- the live queue, as recorded per tick -------------------------------------------------------


def record_queue(snap: QueueSnapshot) -> dict[str, object]:
    """The part of a queue snapshot a challenge's impact needs, as JSON-able data: running jobs
    (id, owner, GPUs, start, time limit, nodes, may_burst, priority) and the on-prem node names.
    Bounded: at most MAX_RECORDED_JOBS jobs (those with the most GPUs first) and
    MAX_RECORDED_NODES nodes; ``jobs_dropped``/``nodes_dropped`` say how many were left out."""
    running = sorted(snap.running, key=lambda j: (-j.gpus, j.id))
    jobs = [
        {
            "id": j.id, "owner": j.owner, "gpus": j.gpus, "start": j.start_time, "limit": j.time_limit_s,
            "nodes": list(j.node_names[:MAX_NODES_PER_JOB]), "may_burst": j.may_burst, "priority": j.priority,
        }
        for j in running[:MAX_RECORDED_JOBS]
    ]
    onprem = sorted(n.name for n in snap.nodes if not n.instance_id)
    return {
        "running": jobs,
        "jobs_dropped": max(0, len(running) - MAX_RECORDED_JOBS),
        "onprem_nodes": onprem[:MAX_RECORDED_NODES],
        "onprem_node_count": len(onprem),
        "nodes_dropped": max(0, len(onprem) - MAX_RECORDED_NODES),
    }


@dataclass(frozen=True, slots=True)
class LiveQueue:
    """Running jobs and on-prem nodes, as of ``as_of``, from ``source`` (for the texts)."""

    running: tuple[Job, ...]
    nodes: tuple[Node, ...]
    as_of: Timestamp | None
    source: str
    onprem_count: int

    @classmethod
    def of_snapshot(cls, snap: QueueSnapshot, now: Timestamp, source: str = "queue") -> LiveQueue:
        return cls(tuple(snap.running), tuple(snap.nodes), now, source, sum(1 for n in snap.nodes if not n.instance_id))


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def queue_from_status(status: Mapping[str, object]) -> LiveQueue | None:
    """The live queue from a controller status row (``record_queue`` under ``"queue"``); None
    when the row has none (no tick recorded yet, or a controller older than this field)."""
    q = status.get("queue")
    if not isinstance(q, Mapping):
        return None
    jobs: list[Job] = []
    for o in q.get("running") or []:
        if not isinstance(o, Mapping):
            continue
        start = _num(o.get("start"))
        jobs.append(Job(
            id=str(o.get("id") or ""), gpus=int(_num(o.get("gpus")) or 0), submit_time=start or 0.0,
            state=JobState.RUNNING, owner=str(o.get("owner") or ""), start_time=start,
            time_limit_s=_num(o.get("limit")), node_names=tuple(str(n) for n in (o.get("nodes") or [])),
            may_burst=bool(o.get("may_burst", True)), priority=int(_num(o.get("priority")) or 0),
        ))
    names = [str(n) for n in (q.get("onprem_nodes") or [])]
    count = q.get("onprem_node_count")
    at = _num(status.get("at"))
    return LiveQueue(
        tuple(jobs), tuple(Node(name=n, gpus=0) for n in names), at,
        f"controller tick at {fmt_time(at)}" if at is not None else "controller status",
        int(count) if isinstance(count, int) else len(names),
    )


# ---- times and durations as admins type them (CLI, --grand-challenge) ---------------------------

_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DUR = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str, where: str) -> float:
    """``6h``, ``90m``, ``1d12h``, or a bare number of seconds. InputError naming ``where``."""
    t = text.strip().lower()
    if _DUR.fullmatch(t):
        return sum(float(n) * _UNIT_S[u] for n, u in _DUR_PART.findall(t))
    try:
        v = float(t)
    except ValueError:
        raise InputError(where, f"{text!r} is not a duration (try 6h, 90m, 1d12h)") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise InputError(where, f"{text!r} is not a duration (try 6h, 90m, 1d12h)")
    return v


def parse_start(text: str, now: Timestamp, where: str = "--start") -> Timestamp:
    """``+2h`` (from now), POSIX seconds, or an ISO time (``2026-05-01T09:00Z``; UTC if no zone)."""
    from datetime import UTC, datetime

    raw = text.strip()
    if raw.startswith("+"):
        return now + parse_duration(raw[1:], where)
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(where, f"{text!r} is not a start time (use 2026-05-01T09:00Z, POSIX seconds or +2h)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


# ---- what an admin asks for ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChallengeRequest:
    """A challenge to schedule, as typed (Slack command/dialog or CLI flags)."""

    start_at: Timestamp
    duration_s: float
    nodes: int = 0  # 0: the whole on-prem cluster
    job_path: str = ""
    job_text: str = ""
    job_kind: ChallengeJobKind = ChallengeJobKind.SLURM
    burst_preempted: bool = False
    name: str = ""
    note: str = ""


def kind_for_path(path: str) -> ChallengeJobKind:
    """A ``.yaml``/``.yml``/``.json`` file is a Kubernetes Job manifest; anything else a Slurm
    batch script."""
    return ChallengeJobKind.KUBERNETES if Path(path).suffix.lower() in (".yaml", ".yml", ".json") else ChallengeJobKind.SLURM


def cheapest_gpu_hour(offers: Iterable[Offer]) -> float:
    """The cheapest price of one GPU-hour among ``offers`` (0 when there are none)."""
    return min((o.price_per_gpu_hour for o in offers), default=0.0)


@dataclass(frozen=True, slots=True)
class Assessment:
    """A challenge request checked against the store and the live queue: ``errors`` (one line
    each; empty when it may be stored) and its ``impact``."""

    errors: tuple[str, ...]
    impact: Impact | None
    queue: LiveQueue | None
    price_per_gpu_hour: float


class ChallengeDesk:
    """What Slack and the CLI do with grand challenges. Holds no state: every call reads the
    store. ``live_queue()`` returns the live queue, or None when it is unknown (then nothing can
    be scheduled: the node count cannot be checked and the impact not shown)."""

    def __init__(
        self,
        store: Store,
        *,
        live_queue: Callable[[], LiveQueue | None],
        settings: ChallengeSettings | None = None,
        price_per_gpu_hour: float = 0.0,
    ) -> None:
        self.store = store
        self.live_queue = live_queue
        self.settings = settings or ChallengeSettings()
        self.price_per_gpu_hour = price_per_gpu_hour

    def assess(self, req: ChallengeRequest, now: Timestamp) -> Assessment:
        """Every problem with ``req`` (the same checks ``schedule`` makes) and its impact."""
        queue = self.live_queue()
        text, job_error = req.job_text, ""
        if req.job_path:
            text, job_error = read_job_spec(req.job_path)
        errors = validate_challenge(
            now=now, start_at=req.start_at, duration_s=req.duration_s, nodes=req.nodes,
            onprem_nodes=queue.onprem_count if queue is not None else max(0, req.nodes),
            job_kind=req.job_kind, job_text=text, job_error=job_error,
            existing=self.store.challenges(states=sorted(CHALLENGE_ACTIVE)), settings=self.settings,
        )
        if queue is None:
            errors.insert(0, "no controller tick recorded yet, so the cluster's nodes and running jobs are unknown "
                             "(is `burst run` running?)")
        impact = None
        if queue is not None and req.duration_s > 0:
            impact = challenge_impact(
                running=queue.running, nodes=queue.nodes, start_at=req.start_at, duration_s=req.duration_s,
                node_count=req.nodes, price_per_gpu_hour=self.price_per_gpu_hour,
            )
        return Assessment(tuple(errors), impact, queue, self.price_per_gpu_hour)

    def schedule(self, actor: str, req: ChallengeRequest, now: Timestamp) -> GrandChallenge:
        """Validate and store (through ``schedule_challenge``: the same checks and audit row for
        every surface). Raises InputError with one line; nothing is stored then."""
        queue = self.live_queue()
        if queue is None:
            raise InputError("grand challenge", self.assess(req, now).errors[0])
        return schedule_challenge(
            self.store, now=now, actor=actor, name=req.name, start_at=req.start_at, duration_s=req.duration_s,
            onprem_nodes=queue.onprem_count, nodes=req.nodes, job_kind=req.job_kind, job_path=req.job_path,
            job_text=req.job_text, burst_preempted=req.burst_preempted, note=req.note, settings=self.settings,
        )

    def listing(self) -> list[GrandChallenge]:
        """The challenges not yet finished, by start."""
        return sorted(self.store.challenges(states=sorted(CHALLENGE_ACTIVE)), key=lambda g: (g.start_at, g.id))

    def get(self, cid: str) -> GrandChallenge:
        gc = self.store.get_challenge(cid) if CHALLENGE_ID.match(cid) else None
        if gc is None:
            raise InputError(cid[:40], "no such grand challenge")
        return gc

    def cancel(self, actor: str, cid: str, now: Timestamp, notifier: Notifier | None = None) -> GrandChallenge:
        """Cancel in any phase (``request_cancel``). InputError for an unknown, finished or
        already-restoring challenge. A challenge cancelled at once after its notice went out is
        announced through ``notifier`` (best effort): the runner never sees it again to do so."""
        before = self.get(cid)
        gc = request_cancel(self.store, cid, now=now, actor=actor)
        if notifier is not None and gc.state is ChallengeState.CANCELLED and before.notices:
            try:
                notifier.notify(ANNOUNCE, f"Grand challenge `{gc.id}` ({gc.name}) is cancelled; your jobs are not affected.")
            except Exception:  # noqa: BLE001 - best effort, by the Notifier contract
                pass
        return gc


# ---- what a challenge is doing, for `gc show` / `gc list` ---------------------------------------


def counts(gc: GrandChallenge) -> dict[str, int]:
    """Preempted jobs, and how many of them were released and confirmed back in the queue."""
    return {
        "preempted": len(gc.preempted_jobs),
        "released": sum(p.released for p in gc.preempted_jobs),
        "restored": sum(p.restored for p in gc.preempted_jobs),
    }


def cancel_outcome(gc: GrandChallenge) -> str:
    """What a cancel just did, in words (true of ``request_cancel`` and the runner)."""
    if str(gc.state) == "cancelled":
        return "cancelled; nothing on the cluster had been touched"
    return ("cancel recorded; on its next tick the controller releases every preempted job, "
            "lifts the reservation, then marks it cancelled")


def challenge_dict(gc: GrandChallenge) -> dict[str, object]:
    """A challenge as JSON (CLI ``--json``)."""
    return {
        "id": gc.id, "name": gc.name, "state": str(gc.state), "ending": str(gc.ending),
        "start": gc.start_at, "end": gc.end_at, "duration_s": gc.duration_s, "nodes": gc.nodes,
        "node_names": list(gc.node_names), "job_kind": str(gc.job_kind), "job_path": gc.job_path,
        "owner": gc.owner or gc.created_by, "burst_preempted": gc.burst_preempted, "note": gc.note,
        "reservation": gc.reservation, "challenge_job_id": gc.challenge_job_id, "notices": list(gc.notices),
        **counts(gc),
        "preempted_jobs": [
            {"job_id": p.job_id, "user": p.user, "gpus": p.gpus, "priority": p.priority, "order": p.order,
             "released_at": p.released_at, "restored": p.restored}
            for p in gc.preempted_jobs
        ],
        "phases": [{"state": s, "at": at} for s, at in gc.phases],
        "last_error": gc.last_error,
    }


def impact_dict(impact: Impact, price_per_gpu_hour: float) -> dict[str, object]:
    return {
        "jobs": list(impact.jobs), "users": list(impact.users), "gpu_hours_at_risk": impact.gpu_hours,
        "nodes": list(impact.nodes), "burst_jobs": list(impact.burst_jobs),
        "burst_preempted_cost_usd": impact.burst_cost_usd, "price_per_gpu_hour": price_per_gpu_hour,
    }


def timeline_promise(settings: ChallengeSettings, burst_preempted: bool, fmt_dur: Callable[[float], str]) -> Sequence[str]:
    """What happens to the jobs at risk, as the runner really does it (the confirmation texts)."""
    notices = ", ".join(f"T-{fmt_dur(o)}" for o in settings.notice_offsets_s) or "no notice offset configured"
    out = [
        f"Owners of jobs at risk get a direct message at {notices}; the announce channel gets a summary.",
        f"From {fmt_dur(settings.drain_window_s)} before the start the challenge's nodes are reserved: "
        "only jobs whose time limit ends before the start may still start there.",
        "At the start every job still running on those nodes gets the checkpoint signal, then "
        f"{fmt_dur(settings.checkpoint_grace_s)} of grace, then it is held (requeued, not cancelled).",
        "When the challenge job ends, or its time is up, the held jobs are released in their original "
        "priority order, ahead of work submitted meanwhile, and the reservation is lifted.",
    ]
    if burst_preempted:
        out.append("--burst-preempted: jobs that may burst are released at once instead of held, so the "
                   "overflow policy can run them on cloud capacity within budget.")
    return out
