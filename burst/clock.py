"""The wall clock: the one :class:`burst.ports.Clock` of the live path.

The simulator moves time itself (:mod:`burst.sim.clock`); everything else that needs "now" in
seconds since the epoch takes a Clock and, when none is given, uses this one.
"""

from __future__ import annotations

import time

from burst.domain import Timestamp


class WallClock:
    """``now()`` is :func:`time.time`: seconds since the epoch, as the store and the clouds use."""

    def now(self) -> Timestamp:
        return time.time()
