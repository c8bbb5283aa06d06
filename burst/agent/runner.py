"""The agent's loop: poll the notice source, report a notice once, log each failure once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from burst.agent.metadata import MetadataError, Notice, NoticeSource
from burst.agent.report import Reporter, ReportError

log = logging.getLogger("burst.agent")


class Agent:
    """``step(now)`` is one poll; ``run`` repeats it every ``interval_s`` until ``stop`` is set.

    * A notice is reported once (a failed report is tried again on the next poll); a later notice
      with another reclaim time is reported again.
    * A failure of the metadata endpoint never raises: it is logged the first time its kind
      (:attr:`MetadataError.kind`) is seen, not again until the endpoint has answered once.
    """

    def __init__(self, source: NoticeSource, reporter: Reporter, *, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.reporter = reporter
        self.clock = clock
        self.reported: Notice | None = None
        self._failing: set[str] = set()
        self.polls = 0
        self.errors = 0

    def step(self, now: float | None = None) -> Notice | None:
        t = self.clock() if now is None else now
        self.polls += 1
        try:
            notice = self.source.poll(t)
        except MetadataError as e:
            self.errors += 1
            if e.kind not in self._failing:
                self._failing.add(e.kind)
                log.warning("metadata endpoint failing (%s); still polling, logged once until it answers", e)
            return None
        except Exception as e:  # noqa: BLE001 - the agent must outlive any surprise of the endpoint
            self.errors += 1
            kind = f"unexpected-{type(e).__name__}"
            if kind not in self._failing:
                self._failing.add(kind)
                log.warning("metadata poll failed unexpectedly (%s: %s); still polling", type(e).__name__, e)
            return None
        if self._failing:
            log.info("metadata endpoint answers again")
            self._failing.clear()
        if notice is None or (self.reported is not None and self.reported.reclaim_at == notice.reclaim_at):
            return notice
        try:
            self.reporter.report(notice)
        except ReportError as e:
            log.warning("spot notice %s (reclaim at %.0f) not reported yet: %s", notice.source, notice.reclaim_at, e)
            return notice
        self.reported = notice
        log.warning("spot notice %s: reclaim at %.0f; node drained for the controller", notice.source, notice.reclaim_at)
        return notice

    def run(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(interval_s)
