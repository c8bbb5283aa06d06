"""Grand challenges in the simulator: the ``--grand-challenge START,DURATION[,NODES]`` value and
the per-challenge figures of the JSON summary (issue 10).

``burst simulate`` wires these in once the challenge runner is part of ``Controller.tick``
(issue 9's merge): it adds one :class:`~burst.domain.GrandChallenge` per flag to the store
before the replay, and reports :func:`challenge_summary` for each at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from burst.domain import ChallengeState, GrandChallenge, Timestamp
from burst.errors import InputError
from burst.sim.cluster import SimCluster

_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DUR = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
DAY_OFFSET_MAX = 10_000.0  # a START below this is a day offset from the trace's start


@dataclass(frozen=True, slots=True)
class ChallengeFlag:
    start: Timestamp
    duration_s: float
    nodes: int  # 0: the whole on-prem cluster


def parse_duration(text: str, where: str) -> float:
    """``6h``, ``90m``, ``1d12h``, or a bare number of seconds."""
    t = text.strip().lower()
    if _DUR.fullmatch(t):
        return sum(float(n) * _UNIT_S[u] for n, u in _DUR_PART.findall(t))
    try:
        return float(t)
    except ValueError:
        raise InputError(where, f"{text!r} is not a duration (try 6h, 90m, 1d12h)") from None


def parse_grand_challenge(value: str, trace_start: Timestamp) -> ChallengeFlag:
    """``START,DURATION[,NODES]``. START is a day offset from the trace's start (``1.5``), POSIX
    seconds, or an ISO time (``2021-03-05T12:00Z``). Raises InputError naming the problem."""
    where = "--grand-challenge"
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise InputError(where, f"{value!r}: expected START,DURATION[,NODES]")
    raw = parts[0]
    try:
        num = float(raw)
        start = trace_start + num * 86400.0 if num < DAY_OFFSET_MAX else num
    except ValueError:
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(where, f"START {raw!r} is not a day offset, POSIX time or ISO time") from None
        start = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    duration = parse_duration(parts[1], where)
    if duration <= 0:
        raise InputError(where, "DURATION must be more than 0")
    nodes = 0
    if len(parts) == 3:
        if not parts[2].isdigit():
            raise InputError(where, f"NODES {parts[2]!r} is not a whole number")
        nodes = int(parts[2])
    return ChallengeFlag(start, duration, nodes)


def challenge_summary(gc: GrandChallenge, cluster: SimCluster) -> dict[str, object]:
    """One entry of the summary's ``challenges`` list.

    ``lost_gpu_hours``: work the preempted jobs lost to this challenge's holds (what no
    checkpoint covered). ``challenge_started_s``: from the checkpoint signal to the challenge job
    running. ``restored_s``: from the challenge's end (RESTORING) to the last release.
    """
    ids = {p.job_id for p in gc.preempted_jobs}
    signalled = gc.entered_at(ChallengeState.PREEMPTING)
    restoring = gc.entered_at(ChallengeState.RESTORING)
    lost = sum(g for jid, at, g in cluster.hold_log if jid in ids and (signalled is None or at >= signalled)
               and (restoring is None or at <= restoring))
    cj = cluster.job(gc.challenge_job_id) if gc.challenge_job_id else None
    began = cj.first_start if cj is not None else None
    released = [p.released_at for p in gc.preempted_jobs if p.released_at is not None]
    return {
        "id": gc.id,
        "state": str(gc.state),
        "start": gc.start_at,
        "end": gc.end_at,
        "nodes": len(gc.node_names) or gc.nodes,
        "preempted_jobs": len(gc.preempted_jobs),
        "restored_jobs": sum(p.restored for p in gc.preempted_jobs),
        "lost_gpu_hours": lost / 3600.0,
        "challenge_started_s": (began - signalled) if began is not None and signalled is not None else None,
        "restored_s": (max(released) - restoring) if released and restoring is not None else (
            0.0 if restoring is not None else None),
    }
