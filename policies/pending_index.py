"""What the overflow pass needs to know about the pending queue as a whole, computed once per
queue rather than once per tick.

The overflow replay (policies/overflow.py) needs the queue in (submit time, id) order and, for
the exhausted tail it does not walk, how many jobs in a stretch of that order may burst. Both
are passes over every pending job: at a million jobs they were most of a tick. Both depend on
the pending tuple alone, so a :class:`PendingIndex` is built for one tuple and answers for it
only (``describes``: the very same tuple object). Who keeps one between ticks is the caller's
business: the controller holds the index of the last queue it saw and reuses it while the queue
source hands back the same tuple (the simulator does, between events); a live adapter that
rebuilds its tuple every tick gets a fresh index, and pays what it paid before.

Pure: no clock, no I/O; the index is a memo on an immutable input. Each part is computed on
first use: a tick with overflow off never orders the queue, and a queue with free capacity never
splits a tail and never counts its may-not-burst jobs.

Still a pass per tick (left to do): :meth:`PendingIndex.with_ids`, the pending jobs that gang
instances name, whenever the set of such instances changed since the last tick (a new gang
launch). Answering it without a pass needs an id table of the whole queue, which cost more to
build at a million jobs (about 1 s under load) than the passes it saves over a few ticks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Set
from itertools import compress, count, islice
from operator import attrgetter, eq, le, lt, not_

from burst.domain import Job

_ID = attrgetter("id")
_SUBMIT = attrgetter("submit_time")
_MAY_BURST = attrgetter("may_burst")
ORDER_KEY = attrgetter("submit_time", "id")


def is_sorted(jobs: tuple[Job, ...]) -> bool:
    """True when ``jobs`` are already in (submit_time, id) order, the order the replay needs.
    Compared at C speed (a million jobs in tens of milliseconds); ids only where times tie."""
    t = list(map(_SUBMIT, jobs))
    if all(map(lt, t, islice(t, 1, None))):
        return True
    if not all(map(le, t, islice(t, 1, None))):
        return False
    return all(jobs[k].id <= jobs[k + 1].id for k in compress(count(), map(eq, t, islice(t, 1, None))))


class PendingIndex:
    """The pending tuple ``pending`` in replay order (``order``: ``pending`` itself when already
    sorted, else a sorted copy), and where in that order the jobs that may not burst are."""

    __slots__ = ("pending", "_order", "_blocked", "_hits")

    def __init__(self, pending: tuple[Job, ...]) -> None:
        self.pending = pending
        self._order: tuple[Job, ...] | None = None
        self._blocked: list[int] | None = None
        self._hits: tuple[frozenset[str], tuple[Job, ...]] | None = None

    @property
    def order(self) -> tuple[Job, ...]:
        if self._order is None:
            self._order = self.pending if is_sorted(self.pending) else tuple(sorted(self.pending, key=ORDER_KEY))
        return self._order

    def describes(self, pending: tuple[Job, ...]) -> bool:
        """True for the tuple this index was built from (the same object, not an equal one)."""
        return pending is self.pending

    def may_burst_between(self, lo: int, hi: int) -> int:
        """How many of ``order[lo:hi]`` may burst (``0 <= lo <= hi <= len(order)``)."""
        if self._blocked is None:
            self._blocked = list(compress(count(), map(not_, map(_MAY_BURST, self.order))))
        b = self._blocked
        return (hi - lo) - (bisect_left(b, hi) - bisect_left(b, lo))

    def with_ids(self, ids: Set[str]) -> list[Job]:
        """The jobs of ``pending`` whose id is in ``ids`` (every one of them when ids repeat),
        in queue order. One pass over the queue, at C speed; the answer for the last ``ids``
        asked is kept, so a tick that asks about the same ids as the last one pays nothing."""
        key = frozenset(ids)
        if self._hits is not None and self._hits[0] == key:
            return list(self._hits[1])
        found = list(compress(self.pending, map(key.__contains__, map(_ID, self.pending))))
        self._hits = (key, tuple(found))
        return found

def index_for(pending: tuple[Job, ...], last: PendingIndex | None) -> PendingIndex:
    """``last`` when it describes ``pending``, else a new index for it."""
    return last if last is not None and last.describes(pending) else PendingIndex(pending)
