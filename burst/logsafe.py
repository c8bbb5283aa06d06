"""Log lines nobody can forge or flood: :func:`install_safe_logging` adds :class:`SafeLogFilter`
to a logger's handlers (the daemon's and the bot's logging setup call it for the root logger;
the bot's gunicorn workers for gunicorn's error log).

Every message is rendered, then each control character (newline and carriage return included),
zero-width and bidi-override character is shown as a visible escape (``\\n``, ``\\x1b``,
``\\u202e``), so text from a request can never start a line of its own (a body holding
``\\nCRITICAL ... approved`` stays inside the line that quotes it); and a message longer than
:data:`MAX_MESSAGE_CHARS` is cut, saying how much was left out. Tracebacks (``exc_info``) are
the formatter's and keep their lines.
"""

from __future__ import annotations

import logging

from burst.redact import escape_control  # one definition of what must not reach a line raw

MAX_MESSAGE_CHARS = 4000


def escape_log_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line with visible escapes, at most ``limit`` characters plus a note."""
    if len(text) > limit:
        cut = len(text) - limit
        return escape_control(text[:limit]) + f"... ({cut} more characters not logged)"
    return escape_control(text)


class SafeLogFilter(logging.Filter):
    """Renders the record's message once, escaped and capped (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            msg = f"{record.msg!s} (unformattable arguments)"
        record.msg = escape_log_text(msg)
        record.args = None
        return True


def install_safe_logging(logger: logging.Logger | None = None) -> None:
    """Add a :class:`SafeLogFilter` to every handler of ``logger`` (default: the root logger);
    idempotent."""
    target = logger if logger is not None else logging.getLogger()
    for h in target.handlers:
        if not any(isinstance(f, SafeLogFilter) for f in h.filters):
            h.addFilter(SafeLogFilter())
