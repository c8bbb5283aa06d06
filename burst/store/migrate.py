"""Alembic migrations of the store, driven from code (no alembic.ini needed).

The scripts ship inside the package (``burst/store/migrations``); :func:`config` points an
in-memory :class:`alembic.config.Config` at them. Each command runs in one transaction on an engine
made by :func:`burst.store.engine.make_engine` (on SQLite: ``BEGIN IMMEDIATE``; on PostgreSQL a
transaction-scoped advisory lock), so two processes upgrading the same database at once take
turns instead of racing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from burst.store.engine import WRITE, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_ADVISORY_LOCK_KEY = 0x62757273  # "burs": serialises concurrent migrations on PostgreSQL


def config(url: str | None = None) -> Config:
    """An Alembic config for the packaged scripts. ``url`` is only needed by env.py when no
    connection is handed over in ``config.attributes["connection"]``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _run(engine: Engine, fn: Callable[[Config], None]) -> None:
    with engine.execution_options(**{WRITE: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
        cfg = config()
        cfg.attributes["connection"] = conn
        fn(cfg)


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade_engine(engine: Engine, revision: str) -> None:
    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def current_engine(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _current(conn)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the newest)."""
    engine = make_engine(url)
    try:
        upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops every table)."""
    engine = make_engine(url)
    try:
        downgrade_engine(engine, revision)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it has never been migrated.

    A SQLite file that does not exist yet is reported as None and is not created."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and not u.database.startswith("file:"):
        if u.database != ":memory:" and not Path(u.database).expanduser().exists():
            return None
    engine = make_engine(url)
    try:
        return current_engine(engine)
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config()).get_current_head()
