"""SQLAlchemy engines configured for burst, shared by the store (:mod:`burst.store.sql`) and the
migrations (:mod:`burst.store.migrate`), so neither imports the other.

On SQLite, pysqlite's own BEGIN handling is switched off (the documented SQLAlchemy recipe) and a
connection whose execution options carry :data:`WRITE` begins with ``BEGIN IMMEDIATE``, taking the
database write lock up front; every other transaction is a plain deferred ``BEGIN``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE = "burst_write"  # execution option: this connection's transaction will write


def _is_sqlite_memory(url: URL) -> bool:
    db = url.database or ""
    return db in ("", ":memory:") or (db.startswith("file:") and "mode=memory" in db)


def make_engine(url: str | URL) -> Engine:
    """An engine configured for burst: SQLite gets WAL, a busy timeout, foreign keys and
    serialised write transactions; PostgreSQL gets connection pre-ping.

    ``postgresql://`` means ``postgresql+psycopg://``. For a SQLite file URL the parent directory
    is created. ``sqlite://`` (in memory) uses one
    shared connection, so every session sees the same database.
    """
    u = make_url(url)
    if u.drivername == "postgresql":  # psycopg 3 is the driver we ship, not SQLAlchemy's default psycopg2
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() != "sqlite":
        return create_engine(u, pool_pre_ping=True)

    memory = _is_sqlite_memory(u)
    if memory:
        engine = create_engine(u, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        assert u.database is not None
        if not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite; SQLAlchemy's "begin" event emits BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
