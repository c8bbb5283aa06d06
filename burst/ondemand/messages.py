"""Text helpers for every user-facing message of the on-demand parts (service refusals, the
controller's DMs), and best-effort delivery through the :class:`~burst.ports.Notifier`.

The Notifier is Slack, so texts are Slack mrkdwn: everything a user typed goes through
:func:`slack_escape` (or :func:`clean_text` when it is stored) before it is shown.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from burst.domain import Timestamp
from burst.ports import Notifier

log = logging.getLogger("burst.ondemand")

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


# Characters that must never be echoed as they are: C0/C1 controls (but newline and tab), DEL,
# zero-width and line/paragraph separators, and the bidirectional overrides and isolates (they
# can make an echoed id or reason read backwards).
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _visible(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def strip_unsafe(text: str) -> str:
    """``text`` with every control, zero-width and bidi-override character shown as a visible
    escape (``\\u202e``) instead; newlines and tabs are kept."""
    return _UNSAFE.sub(_visible, text)


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control (&, <, >), and show control
    and bidi-override characters as visible escapes (:func:`strip_unsafe`)."""
    return strip_unsafe(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def clean_text(text: str, limit: int = 200) -> str:
    """User free text (notes): control and bidi characters removed, whitespace folded, capped."""
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def fmt_time(t: Timestamp | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_hours(h: float) -> str:
    if h < 1:
        return f"{round(h * 60)} min"
    return f"{h:g} h"



def notify_quietly(notifier: Notifier | None, audience: str, text: str) -> None:
    """Send ``text`` to ``audience``; a failure is logged (its type only), never raised."""
    if notifier is None:
        return
    try:
        notifier.notify(audience, text)
    except Exception as e:  # noqa: BLE001 - notifications are best effort by contract
        log.warning("notify %s failed: %s", audience, type(e).__name__)
