"""The simulator's clocks: a :class:`VirtualClock` it moves, and the :class:`ScaledClock` of
``burst run`` on the simulated queue. The live wall clock is :class:`burst.clock.WallClock`
(re-exported here for the tests and benches that drive simulated clouds in real time)."""

from __future__ import annotations

import time
from collections.abc import Callable

from burst.clock import WallClock
from burst.domain import Timestamp

__all__ = ["ScaledClock", "VirtualClock", "WallClock"]


class VirtualClock:
    """A clock that only moves when told to, and never backwards."""

    def __init__(self, start: Timestamp = 0.0) -> None:
        self._now = start

    def now(self) -> Timestamp:
        return self._now

    def set(self, t: Timestamp) -> None:
        if t < self._now:
            raise ValueError(f"virtual clock cannot go back from {self._now} to {t}")
        self._now = t

    def advance(self, seconds: float) -> Timestamp:
        self.set(self._now + seconds)
        return self._now


class ScaledClock:
    """Simulated time for ``burst run`` on the simulated queue: starts at ``origin`` and runs
    ``speed`` times faster than the wall clock."""

    def __init__(self, origin: Timestamp, speed: float, wall: Callable[[], float] = time.monotonic) -> None:
        self.origin = origin
        self.speed = speed
        self._wall = wall
        self._wall0 = wall()

    def now(self) -> Timestamp:
        return self.origin + (self._wall() - self._wall0) * self.speed
