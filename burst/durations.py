"""The run-time distribution the controller learns online from the jobs it sees finish.

Fed once per tick with the queue's observation (:meth:`DurationLearner.observe`), exactly what a
live controller sees: a job seen running with a start time and later seen neither running nor
pending has finished, and it ran from its start time until the observation that first missed
it (so a duration is over-estimated by at most one tick: a cautious error, since it makes
running jobs look longer). A job that goes back to pending (requeued, preempted) did not
finish and teaches nothing. The true durations of running or pending jobs are never used.

The learnt state is the recent window of finished durations per size bucket
(policies/remaining.py), kept sorted; :meth:`DurationLearner.model` hands the policies a frozen
copy, rebuilt only when something new finished. In memory: a restarted controller learns again
(until then overflow predicts no on-prem start and behaves as it did without a predictor).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from types import MappingProxyType

from burst.domain import QueueSnapshot, Timestamp
from policies.remaining import ALL, DurationModel, size_bucket

WINDOW = 2000  # finished jobs remembered per bucket: recent behaviour, bounded memory


class DurationLearner:
    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self._running: dict[str, tuple[Timestamp, int]] = {}  # job id -> (start time, GPUs)
        self._order: dict[int, deque[float]] = {}  # bucket -> durations, oldest first
        self._sorted: dict[int, list[float]] = {}  # bucket -> the same, sorted
        self._model: DurationModel | None = DurationModel()
        self.finished = 0

    def observe(self, now: Timestamp, qs: QueueSnapshot) -> int:
        """Record the jobs that finished since the last observation; returns how many."""
        seen: dict[str, tuple[Timestamp, int]] = {}
        for j in qs.running:
            if j.start_time is not None:
                seen[j.id] = (j.start_time, j.gpus)
        gone = self._running.keys() - seen.keys()
        found = 0
        if gone:
            requeued = {j.id for j in qs.pending if j.id in gone}
            for jid in gone:
                if jid in requeued:
                    continue
                start, gpus = self._running[jid]
                if now >= start:
                    self.record(now - start, gpus)
                    found += 1
        self._running = seen
        return found

    def record(self, duration_s: float, gpus: int) -> None:
        """One finished job of ``gpus`` GPUs ran ``duration_s`` seconds."""
        for b in (ALL, size_bucket(gpus)):
            order = self._order.setdefault(b, deque())
            srt = self._sorted.setdefault(b, [])
            if len(order) >= self.window:
                old = order.popleft()
                del srt[bisect_left(srt, old)]
            order.append(duration_s)
            insort(srt, duration_s)
        self.finished += 1
        self._model = None

    def model(self) -> DurationModel:
        """The learnt distribution, frozen (the same object until a new job finishes)."""
        if self._model is None:
            self._model = DurationModel(MappingProxyType({b: tuple(s) for b, s in self._sorted.items()}))
        return self._model
