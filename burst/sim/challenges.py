"""Grand challenges in the simulator: the ``--grand-challenge START,DURATION[,NODES]`` value and
the per-challenge figures of the JSON summary (issue 10).

``burst simulate`` adds one :class:`~burst.domain.GrandChallenge` per flag to each simulation's
store before the replay (:func:`challenges_for`; the runner is part of ``Controller.tick``, which
the simulator drives), and reports :func:`challenge_summary` for each at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from burst.challenges import parse_duration
from burst.domain import ChallengeJobKind, ChallengeState, GrandChallenge, Timestamp
from burst.errors import InputError
from burst.sim.cluster import SimCluster
from policies.grand_challenge import ChallengeSettings, validate_challenge

DAY_OFFSET_MAX = 10_000.0  # a START below this is a day offset from the trace's start


@dataclass(frozen=True, slots=True)
class ChallengeFlag:
    start: Timestamp
    duration_s: float
    nodes: int  # 0: the whole on-prem cluster


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


SIM_JOB = "#!/bin/sh\n# the simulated challenge job: runs for the challenge's duration\n"


def challenges_for(
    flags: Sequence[tuple[str, ChallengeFlag]], *, sim_start: Timestamp, onprem_nodes: int,
    settings: ChallengeSettings | None = None,
) -> list[GrandChallenge]:
    """One challenge per ``(flag text, flag)``, checked as ``burst gc schedule`` checks one (start
    after the replay's start, duration within the maximum, nodes within the cluster, no overlap
    with an earlier flag). Raises InputError naming the flag; nothing is simulated then."""
    out: list[GrandChallenge] = []
    for k, (text, f) in enumerate(flags):
        errors = validate_challenge(
            now=sim_start, start_at=f.start, duration_s=f.duration_s, nodes=f.nodes, onprem_nodes=onprem_nodes,
            job_kind=ChallengeJobKind.SLURM, job_text=SIM_JOB, existing=out, settings=settings or ChallengeSettings(),
        )
        if errors:
            raise InputError("--grand-challenge", f"{text}: " + "; ".join(errors))
        out.append(GrandChallenge(
            id=f"gc-{k:06x}", name=f"what-if {k + 1}", start_at=f.start, duration_s=f.duration_s, command="(simulated)",
            created_by="simulate", owner="simulate", nodes=f.nodes, job_text=SIM_JOB,
        ))
    return out


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
