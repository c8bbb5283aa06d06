"""The simulator's :class:`burst.ports.Notifier`: messages kept in memory, in order.

Where the live daemon has Slack (``bot/notifier.py``), a simulation or a test has this. It keeps
the port's contract, including the part a real channel makes hard to see: notifying is best
effort. While :attr:`RecordingNotifier.failing` names a reason (the harness playing a Slack that
answers errors or is down), messages are dropped and a warning is logged, and ``notify`` still
returns normally; nothing is ever raised into the caller. The log names the audience and the
reason, never the text (which is the caller's and may be long).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("burst.sim.notifier")


class RecordingNotifier:
    """``notify(audience, text)`` appends ``(audience, text)`` to :attr:`sent`; ``audience`` is a
    user id, ``"admins"`` or ``"all"``, kept as given. Thread-safe (the controller and the mirror
    worker may both notify)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.dropped: list[tuple[str, str]] = []
        self.failing = ""  # non-empty: play a channel that fails, with this reason
        self._lock = threading.Lock()

    def notify(self, audience: str, text: str) -> None:
        with self._lock:
            if self.failing:
                self.dropped.append((audience, text))
                reason = self.failing
            else:
                self.sent.append((audience, text))
                return
        log.warning("notify %s failed: %s", audience, reason)

    def to(self, audience: str) -> list[str]:
        """The texts sent to one audience, in order."""
        with self._lock:
            return [t for a, t in self.sent if a == audience]
