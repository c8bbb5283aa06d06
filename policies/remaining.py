"""Remaining run time of running jobs, from the durations of jobs that already finished.

A queue never says how long a job will run. What burst can know is how long *finished* jobs
ran (the controller learns that online, burst/durations.py) and how long each running job has
run so far. This module is the pure maths over that evidence: an empirical distribution of run
times per GPU-size bucket, and, for a job that has run ``elapsed`` seconds, the conditional law

    P(D <= elapsed + r | D > elapsed) = 1 - S(elapsed + r) / S(elapsed)

where S is the empirical survival function. Quantiles of it answer "by when has this job ended
with probability q"; its mean is E[remaining | elapsed]. Where the evidence is thin (fewer than
``min_evidence`` finished jobs ran longer than ``elapsed``), the answer is "unknown" (infinity):
a job older than nearly everything seen so far may run for ever, as far as burst can tell.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ALL = 0  # the bucket of every finished job, whatever its size


def size_bucket(gpus: int) -> int:
    """Jobs are grouped by size (1, 2, 4, 8 GPUs, then gangs of more): sizes run differently
    (single-GPU work is mostly short experiments, whole-node and gang work mostly training)."""
    if gpus <= 1:
        return 1
    if gpus <= 2:
        return 2
    if gpus <= 4:
        return 4
    if gpus <= 8:
        return 8
    return 16


def _empty() -> Mapping[int, tuple[float, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DurationModel:
    """Empirical run-time distribution: ``samples`` maps a size bucket (:func:`size_bucket`, and
    :data:`ALL`) to the sorted run times, in seconds, of finished jobs of that size.

    A bucket with fewer than ``min_samples`` samples borrows the whole distribution (ALL).
    Conditional answers need at least ``min_evidence`` samples longer than ``elapsed``.
    """

    samples: Mapping[int, tuple[float, ...]] = field(default_factory=_empty)
    min_samples: int = 50
    min_evidence: int = 20

    def _sorted(self, gpus: int) -> tuple[float, ...]:
        own = self.samples.get(size_bucket(gpus), ())
        if len(own) >= self.min_samples:
            return own
        return self.samples.get(ALL, ())

    def count(self, gpus: int) -> int:
        """How many finished jobs speak for a job of ``gpus`` GPUs."""
        return len(self._sorted(gpus))

    def survival(self, gpus: int, t: float) -> float:
        """S(t): the fraction of finished jobs (of this size) that ran longer than ``t``."""
        s = self._sorted(gpus)
        if not s:
            return 1.0
        return (len(s) - bisect_right(s, t)) / len(s)

    def end_probability(self, gpus: int, elapsed: float, within: float) -> float:
        """P(the job ends within ``within`` more seconds | it has run ``elapsed``); 0 on thin
        evidence (nothing can be promised)."""
        s = self._sorted(gpus)
        i = bisect_right(s, elapsed)
        alive = len(s) - i
        if alive < self.min_evidence:
            return 0.0
        ended = bisect_right(s, elapsed + within) - i
        return ended / alive

    def remaining_quantile(self, gpus: int, elapsed: float, q: float) -> float:
        """The least r with P(D <= elapsed + r | D > elapsed) >= q: by ``elapsed + r`` the job has
        ended with probability at least ``q``. Infinity on thin evidence."""
        s = self._sorted(gpus)
        i = bisect_right(s, elapsed)
        alive = len(s) - i
        if alive < self.min_evidence:
            return math.inf
        k = max(0, math.ceil(q * alive) - 1)
        return max(0.0, s[i + min(k, alive - 1)] - elapsed)

    def expected_remaining(self, gpus: int, elapsed: float) -> float:
        """E[D - elapsed | D > elapsed] over the finished jobs; infinity on thin evidence."""
        s = self._sorted(gpus)
        i = bisect_right(s, elapsed)
        alive = len(s) - i
        if alive < self.min_evidence:
            return math.inf
        return sum(s[i:]) / alive - elapsed
