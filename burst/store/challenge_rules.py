"""Grand-challenge field rules, shared by every Store implementation (memory and SQL), so both
refuse the same writes and mark jobs the same way."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from burst.domain import GrandChallenge, PreemptedJob, Timestamp


def check_challenge_fields(cur: GrandChallenge, fields: Mapping[str, Any]) -> None:
    """Refuse writes that would break the runner's crash safety.

    * ``state`` and ``phases`` change only through ``transition_challenge``.
    * The preempted set, once recorded (non-empty), is never replaced: restore must give back
      exactly the jobs that were preempted. Its per-job flags change through the ``mark_*``
      methods only.
    """
    for name in ("state", "phases", "id"):
        if name in fields:
            raise ValueError(f"challenge field {name!r} cannot be set here")
    if "preempted_jobs" in fields and cur.preempted_jobs and tuple(fields["preempted_jobs"]) != cur.preempted_jobs:
        raise ValueError(f"challenge {cur.id!r}: the preempted set is already recorded")


def released(gc: GrandChallenge, job_ids: Sequence[str], now: Timestamp) -> tuple[PreemptedJob, ...]:
    want = set(job_ids)
    return tuple(
        dataclasses.replace(p, released_at=now) if p.job_id in want and p.released_at is None else p
        for p in gc.preempted_jobs
    )


def restored(gc: GrandChallenge, job_ids: Sequence[str]) -> tuple[PreemptedJob, ...]:
    want = set(job_ids)
    return tuple(dataclasses.replace(p, restored=True) if p.job_id in want else p for p in gc.preempted_jobs)
