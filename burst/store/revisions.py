"""The shipped migration scripts' newest revision, read without Alembic or SQLAlchemy.

:func:`shipped_head` lives here (re-exported by :mod:`burst.store.migrate`) so that a reader that
only needs to know whether a database is current (``burst status``) imports nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_REVISION_LINE = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(?:\"([^\"]*)\"|'([^']*)'|None)\s*$", re.M)


def shipped_head() -> str | None:
    """The newest shipped revision, read from the scripts' ``revision``/``down_revision`` lines
    without importing Alembic. None when the scripts do not form one plain chain (a merge, a
    line this reader does not understand): then only Alembic can tell, and callers ask it."""
    revs: dict[str, str | None] = {}
    for f in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found: dict[str, str | None] = {}
        for m in _REVISION_LINE.finditer(f.read_text(encoding="utf-8")):
            found.setdefault(m.group(1), m.group(2) or m.group(3) or None)
        if "revision" not in found or not found["revision"] or "down_revision" not in found:
            return None
        revs[str(found["revision"])] = found["down_revision"]
    parents = set(revs.values())
    heads = [r for r in revs if r not in parents]
    return heads[0] if len(heads) == 1 and len(parents) == len(revs) else None
