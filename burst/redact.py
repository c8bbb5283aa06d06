"""Credentials out of every message: the one redaction helper shared by config errors, CLI
errors, the store's connection errors and every log line (:mod:`burst.logs`).

What counts as a credential in free text:

* the password of a URL's authority, ``scheme://user:PASSWORD@host`` (``user`` is kept: it tells
  an operator which role failed, and is not a secret);
* a ``password=``/``passwd=``/``pwd=``/``secret=``/``token=`` parameter (libpq keyword strings,
  query strings, ``sslpassword=``), up to the next ``&``, space or quote.

Over-redacting is fine; under-redacting is not. A password holding ``/`` or an unencoded ``@``
still disappears: the URL pattern takes everything up to the *last* ``@`` of the word.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:secret@  (secret: anything but whitespace, up to the word's last '@')
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*):(?P<secret>\S*)@")
# user:secret@host with no scheme (a DSN pasted without it)
_BARE_CREDENTIALS = re.compile(r"(?P<head>(?<![\w/:@.-])[\w.+-]+):(?P<secret>[^\s@/'\"]+)@(?=[\w\[])")
_KEY_VALUE = re.compile(
    r"(?P<key>\b(?:ssl)?(?:password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*)(?P<value>[^\s&'\",;]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every credential replaced by ``***``. Cheap on text without ``://`` or ``=``."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    if "@" in text:
        text = _BARE_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    if "=" in text or ":" in text:
        text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{MASK}", text)
    return text


# C0/C1 controls, the Arabic letter mark, zero-width and bidi marks/overrides/isolates, line and
# paragraph separators, word joiners and the BOM: everything that can break or hide a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` on one line: control characters (newlines included) and bidirectional overrides
    as visible escapes (``\\n``, ``\\x1b``, ``\\u202e``), so text that came from a file, a user
    or a queue cannot forge a second line of a message or a log, nor hide itself."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), m.group().encode("unicode_escape").decode("ascii")), text)


def exception_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception as one redacted line for an operator. SQLAlchemy wraps the driver's error
    (``.orig``), whose text is shorter and says what happened; ``limit`` cuts a long line."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    if limit is not None and len(line) > limit:
        line = line[: limit - 3] + "..."
    return redact(line)
