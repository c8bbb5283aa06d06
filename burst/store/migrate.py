"""Alembic migrations of the store, driven from code (no alembic.ini needed).

The scripts ship inside the package (``burst/store/migrations``); :func:`config` points an
in-memory :class:`alembic.config.Config` at them. Each command runs in one transaction on an engine
made by :func:`burst.store.engine.make_engine` (on SQLite: ``BEGIN IMMEDIATE``; on PostgreSQL a
transaction-scoped advisory lock), so two processes upgrading the same database at once take
turns instead of racing.

Alembic is imported only when a command runs: opening a store whose schema is already at the
newest revision (:func:`is_current`, a plain ``SELECT`` and a read of the scripts' revision
lines) costs no Alembic import, which is most of a short CLI command's start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from burst.store.engine import WRITE, make_engine
from burst.store.revisions import MIGRATIONS_DIR as MIGRATIONS_DIR  # re-exported: defined there
from burst.store.revisions import shipped_head as shipped_head

if TYPE_CHECKING:
    from alembic.config import Config

_ADVISORY_LOCK_KEY = 0x62757273  # "burs": serialises concurrent migrations on PostgreSQL


def config(url: str | None = None) -> Config:
    """An Alembic config for the packaged scripts. ``url`` is only needed by env.py when no
    connection is handed over in ``config.attributes["connection"]``."""
    from alembic.config import Config

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
    from alembic import command

    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade_engine(engine: Engine, revision: str) -> None:
    from alembic import command

    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def is_current(engine: Engine) -> bool:
    """True when the database is already at the newest shipped revision (then there is nothing
    to migrate and Alembic is not loaded). Any doubt (no version table, a revision this reader
    cannot work out) is False: the caller then runs the real upgrade, which is a no-op when
    the schema turns out current."""
    want = shipped_head()
    if want is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # no version table yet (a new database), or unreadable: migrate
        return False
    return rows == [want]


def current_engine(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _current(conn)


def _current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

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
