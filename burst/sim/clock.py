"""Clocks. The daemon uses :class:`WallClock`; the simulator a :class:`VirtualClock` it moves."""

from __future__ import annotations

import time

from burst.domain import Timestamp


class WallClock:
    def now(self) -> Timestamp:
        return time.time()


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
