"""``burst db ...``: schema migrations of the store.

The main CLI mounts this with ``app.add_typer(cli_db.app, name="db")``. The database URL comes
from ``--url``, else the ``BURST_DB_URL`` environment variable, else ``sqlite:///.burst/burst.db``.
Any failure prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer

# Imported lazily: the main ``burst`` command mounts this sub-app, and every other command
# (``burst mirror`` in particular) should not pay for SQLAlchemy and Alembic at start-up.
DEFAULT_URL = "sqlite:///.burst/burst.db"  # the same default as burst.store.sql.DEFAULT_URL

app = typer.Typer(
    help="Database schema: upgrade, show or downgrade the store's Alembic revision.",
    no_args_is_help=True,
    add_completion=False,
)

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="BURST_DB_URL",
        help="Database URL, e.g. sqlite:///.burst/burst.db or postgresql+psycopg://user@host/db.",
        show_envvar=True,
    ),
]


def _safe(url: str) -> str:
    """The URL for display, password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid url>"


def _one_line(exc: BaseException) -> str:
    from burst.redact import exception_line

    return exception_line(exc)


@contextlib.contextmanager
def _errors_exit_2(what: str, url: str) -> Iterator[None]:
    from burst.config import database_url_problem  # the same check as the config's database_url

    problem = database_url_problem(url)
    if problem:
        typer.echo(f"burst db {what}: error: --url: {problem}", err=True)
        raise typer.Exit(2)
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        typer.echo(f"burst db {what}: error: {_one_line(exc)}", err=True)
        raise typer.Exit(2) from None


@app.command()
def upgrade(
    url: UrlOption = DEFAULT_URL,
    revision: Annotated[str, typer.Option("--revision", "-r", help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    with _errors_exit_2("upgrade", url):
        from burst.store import migrate

        migrate.upgrade(url, revision)
        typer.echo(f"{_safe(url)}: at revision {migrate.current(url) or 'base'}")


@app.command()
def current(url: UrlOption = DEFAULT_URL) -> None:
    """Print the database's revision ("base" when it has never been migrated)."""
    with _errors_exit_2("current", url):
        from burst.store import migrate

        rev = migrate.current(url)
        head = migrate.head()
        note = "" if rev == head else f" (newest is {head})"
        typer.echo(f"{rev or 'base'}{note}")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help='Target revision, e.g. "base" to drop every table.')],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Migrate the database down to REVISION."""
    with _errors_exit_2("downgrade", url):
        from burst.store import migrate

        migrate.downgrade(url, revision)
        typer.echo(f"{_safe(url)}: at revision {migrate.current(url) or 'base'}")
