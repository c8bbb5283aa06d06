"""What the ``burst`` commands share that needs no Typer: the consoles, the one-line error, and
opening the store. :mod:`burst.cli` (the Typer app) and :mod:`burst.cli_status` (``burst status``
without Typer, issue 15) both use these, so the two print and fail alike.

A ``fail(msg, code)`` callable is passed in where a helper may end the command: the Typer app's
raises ``typer.Exit``, the fast path's :func:`exit_with` raises ``SystemExit``; both print the
same line and end the process with the same code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

if TYPE_CHECKING:
    from burst.ports import Store

Fail = Callable[[str, int], NoReturn]

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def error_line(msg: str) -> None:
    """One ``error:`` line on stderr: credentials redacted, control characters escaped, and the
    text never read as Rich markup (a value holding ``[/red]`` is printed as it is)."""
    from rich.markup import escape

    from burst.redact import escape_control, redact

    err_console.print(f"[red]error:[/red] {escape(escape_control(redact(msg)))}", highlight=False, soft_wrap=True)


def exit_with(msg: str, code: int = 2) -> NoReturn:
    """:func:`error_line`, then end the process with ``code`` (outside Typer)."""
    error_line(msg)
    raise SystemExit(code)


def one_line(exc: BaseException) -> str:
    from burst.redact import exception_line

    return exception_line(exc, limit=300)


def check_db_url(url: str, option: str, fail: Fail) -> None:
    """Exit 2 with one line for a URL that cannot be burst's database (never showing its
    password)."""
    from burst.db_url import database_url_problem

    problem = database_url_problem(url)
    if problem:
        fail(f"{option}: {problem}", 2)


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (None: in memory, or not SQLite)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:") or "mode=memory" in url:
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0]).expanduser()


def open_store(url: str, option: str, fail: Fail, *, read_only: bool = False) -> Store:
    """The store at ``url``; a bad or unreachable database is one line (exit 2 for a URL that
    is not a database, 1 for one that does not answer), never a traceback.

    ``read_only``: the command only reads (``status``, ``gc list``): a SQLite file that does not
    exist is not created (nor its ``.burst/`` directory); an empty in-memory store stands in,
    which reads exactly as a database nothing has run against."""
    from sqlalchemy.exc import SQLAlchemyError

    from burst.redact import redact
    from burst.store.sql import SqlStore

    check_db_url(url, option, fail)
    path = sqlite_file(url)
    if read_only and path is not None and not path.exists():
        url = "sqlite://"
    try:
        # burst.wiring.open_store's steps, without importing the controller and its policies
        # (start-up of short commands: issue 15).
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return SqlStore.from_url(url, upgrade=True)
    except (SQLAlchemyError, OSError) as e:
        fail(f"database {redact(url)}: {one_line(e)}", 1)
    except Exception as e:
        # Alembic's CommandError, without importing Alembic for a store that is current (it
        # is loaded only to migrate; if it is not loaded, nothing raised one).
        alembic_util = sys.modules.get("alembic.util")
        if alembic_util is not None and isinstance(e, alembic_util.CommandError):
            fail(f"database {redact(url)}: {one_line(e)}", 1)
        raise
