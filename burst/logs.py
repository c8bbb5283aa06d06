"""Logging for burst's commands: one line per record, text or JSON, libraries kept quiet.

:func:`setup` is what every command (``burst run``, ``burst bot``) calls instead of
``logging.basicConfig``. What it guarantees, whatever a message carries:

* **One line per record.** Control characters (newlines included) and bidirectional overrides in
  a message are escaped (``\\n``, ``\\x1b``, ``\\u202e``), so text that came from a user, a
  queue or a cloud cannot forge a second log line or hide itself.
* **No credentials.** Every message goes through :func:`burst.redact.redact`.
* **JSON on request** (``--log-format json``): ``{"ts", "level", "logger", "msg", "fields"}``
  per line; ``fields`` holds what the caller passed in ``extra=`` (and ``exc`` a traceback).
* **Quiet libraries.** Below debug, APScheduler's per-tick "Running job"/"executed successfully"
  lines, Alembic's context and plugin lines, and per-request HTTP client lines are not shown.
  APScheduler's "maximum number of running instances reached" (a tick due while the previous
  one still runs) becomes one warning from ``burst.scheduling`` that says what it means, once
  per process; the later ones are debug lines.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Literal, TextIO

from burst.redact import escape_control, redact

LogFormat = Literal["text", "json"]
FORMATS: tuple[str, ...] = ("text", "json")

# Loggers of libraries whose INFO lines are per-tick or per-request noise for an operator.
QUIET_LIBRARIES = ("apscheduler", "alembic", "botocore", "urllib3", "httpx", "httpcore", "azure", "kubernetes")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def clean_message(record: logging.LogRecord) -> str:
    try:
        msg = record.getMessage()
    except Exception:  # a bad %-format must not lose the line
        msg = f"{record.msg!s} {record.args!r}"
    return escape_control(redact(msg))


class TextFormatter(logging.Formatter):
    """``2026-12-03 13:31:01,123 INFO burst.controller: message`` (the format ``burst run`` has
    always printed), the message escaped and redacted. A traceback follows on its own lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = clean_message(record)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601, UTC), level, logger, msg, fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: _jsonable(v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if record.exc_info:
            fields["exc"] = redact(self.formatException(record.exc_info))
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(_safe_message(record)),
            "fields": fields,
        }
        return json.dumps(out, ensure_ascii=True, default=str)


def _safe_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg!s} {record.args!r}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, str):
        return redact(v)
    if v is None or isinstance(v, bool | int | float):
        return v
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v[:100]]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in list(v.items())[:100]}
    return redact(str(v))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever ``sys.stderr`` is at the time of the record (a test runner swaps it)."""

    _burst = True

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class SkippedTickFilter(logging.Filter):
    """Turns APScheduler's "maximum number of running instances reached" warnings into one
    useful warning (first time) and debug lines after."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" not in str(record.msg):
            return True
        self.skipped += 1
        out = logging.getLogger("burst.scheduling")
        if self.skipped == 1:
            out.warning(
                "tick skipped: the previous tick is still running (a tick takes longer than tick_interval_s; "
                "later skips are logged at debug level)"
            )
        else:
            out.debug("tick skipped again: the previous tick is still running (%d skips so far)", self.skipped)
        return False


def setup(level: int = logging.INFO, fmt: str = "text") -> None:
    """Configure the root logger for a burst command (idempotent: replaces what an earlier call
    installed). Raises ValueError for an unknown ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_burst", False):
            root.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
    sched = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, SkippedTickFilter) for f in sched.filters):
        sched.addFilter(SkippedTickFilter())
