"""Where the slow half of a command runs: after the acks.

Slack gives an ack 3 seconds and a reply through the ``response_url`` 30 minutes. In one worker
process, lazy work (store queries, the reply's HTTP round trip) and acks share the GIL: a lazy
thread holding it delays every ack that arrives meanwhile, and under a burst of commands the acks
are what miss their deadline. So lazy work yields to acks:

* :class:`AckGate` counts the acks in progress in this process (the WSGI wrapper
  :func:`gated` marks them) and when the last one ended;
* :class:`YieldingExecutor` runs a lazy task only once no ack is in progress and none has ended
  for ``quiet_s``, or once the task has waited ``max_defer_s`` (so a steady stream of acks delays
  replies by at most that much; it never starves them).

It is the executor given to Bolt (``listener_executor``) and the one ``/burst`` defers to
directly (bot/commands.py), so both paths yield.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

QUIET_S = 0.02
MAX_DEFER_S = 1.0


class AckGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._last_end = float("-inf")

    def begin(self) -> None:
        with self._cond:
            self._in_flight += 1

    def end(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._last_end = self._clock()
            if self._in_flight == 0:
                self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wait_turn(self, queued_at: float, quiet_s: float = QUIET_S, max_defer_s: float = MAX_DEFER_S) -> float:
        """Block until lazy work may run; returns the seconds waited."""
        with self._cond:
            while True:
                now = self._clock()
                if now - queued_at >= max_defer_s:
                    return now - queued_at
                if self._in_flight == 0:
                    idle = now - self._last_end
                    if idle >= quiet_s:
                        return now - queued_at
                    left = quiet_s - idle
                else:
                    left = max_defer_s - (now - queued_at)
                self._cond.wait(min(left, max_defer_s - (now - queued_at)))


class YieldingExecutor(Executor):
    """A thread pool whose tasks wait their turn at the :class:`AckGate` before running."""

    def __init__(self, gate: AckGate, max_workers: int = 4, *, quiet_s: float = QUIET_S,
                 max_defer_s: float = MAX_DEFER_S, thread_name_prefix: str = "burst-bot-lazy") -> None:
        self.gate = gate
        self.quiet_s = quiet_s
        self.max_defer_s = max_defer_s
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name_prefix)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        queued_at = self.gate._clock()

        def run() -> Any:
            self.gate.wait_turn(queued_at, self.quiet_s, self.max_defer_s)
            return fn(*args, **kwargs)

        return self._pool.submit(run)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def gated(wsgi: Callable[[dict[str, Any], Any], Iterable[bytes]], gate: AckGate) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    """Wrap a WSGI app so every request counts as an ack in progress while it is handled. (With
    ``process_before_response`` the Bolt handler has computed the whole response when it returns.)"""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        gate.begin()
        try:
            return wsgi(environ, start_response)
        finally:
            gate.end()

    return app
