"""Read-only view of a SQLite store at the newest revision, on the standard library's ``sqlite3``.

Why a second reader beside :class:`burst.store.sql.SqlStore` (issue 15, start-up): importing
SQLAlchemy costs more than the whole 0.3 s budget of ``burst status``. This module answers only
the five reads ``burst status`` makes (:meth:`controller_status`, :meth:`live_instances`,
:meth:`spend`, and for :meth:`burst.budgets.BudgetBook.states` :meth:`spend_entries` and
:meth:`get_user_setting`), with the same SQL as ``SqlStore`` (same filters, same order, the same
``coalesce(sum(usd), 0.0)``, so the same floats) and the same row conversion (the domain's field
names are the column names; JSON columns hold ``json.dumps`` text, as SQLAlchemy's ``JSON``
writes it). ``tests/store/test_sqlite_read.py`` holds every method to ``SqlStore``'s answers on
one database (and an absent file to an empty store); a schema change that moves a column
these reads use needs a new revision, after which :func:`open_current` declines and the caller
uses ``SqlStore`` (which migrates) until this reader is checked against it again.

:func:`open_current` hands out a reader only when it is certain to answer like ``SqlStore``:
the file exists and is at the newest shipped revision (or does not exist: an empty store).
Anything else (another revision, an unreadable file) is None, and the caller takes the
``SqlStore`` path, which migrates or reports the error exactly as before. It never writes and
never creates a file or directory.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import fields
from pathlib import Path
from typing import Any

from burst.domain import Instance, InstanceState, Market, Purpose, Timestamp
from burst.ports import SpendEntry
from burst.store.ledger import BILLING_MINIMUM_S
from burst.store.revisions import shipped_head

_INSTANCE_FIELDS = tuple(f.name for f in fields(Instance))
_INSTANCE_COLUMNS = ", ".join(f'"{name}"' for name in _INSTANCE_FIELDS)
_LIVE = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE state != ?"
_LEDGER_COLUMNS = "instance_id, cloud, region, purpose, team, owner, start_at, end_at, usd"
CONTROLLER_STATUS = "controller_status"  # as burst.store.sql.CONTROLLER_STATUS
BUSY_TIMEOUT_S = 30.0  # as burst.store.engine.SQLITE_BUSY_TIMEOUT_MS


def _to_instance(row: sqlite3.Row) -> Instance:
    kw: dict[str, Any] = {name: row[name] for name in _INSTANCE_FIELDS}
    kw["market"] = Market(row["market"])
    kw["purpose"] = Purpose(row["purpose"])
    kw["state"] = InstanceState(row["state"])
    kw["for_jobs"] = tuple(json.loads(row["for_jobs"]) or ()) if row["for_jobs"] is not None else ()
    return Instance(**kw)


class SqliteReader:
    """The reads of ``burst status`` from one SQLite file at the newest revision, or from no file
    (``path`` None: reads as an empty store). One connection per call; nothing is written."""

    def __init__(self, path: Path | None) -> None:
        self._path = path

    def _connect(self) -> sqlite3.Connection:
        """A connection whose statements until it is closed share one snapshot (one deferred
        transaction, as each ``SqlStore`` read method has). ``mode=rw``: never creates the file;
        read-write as ``SqlStore`` opens it, though nothing is written, because a read-only open
        of a WAL database leaves its ``-wal`` and ``-shm`` files behind, which the last
        read-write connection removes."""
        assert self._path is not None
        conn = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN")
        return conn

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if self._path is None:
            return []
        with closing(self._connect()) as conn:
            return conn.execute(sql, args).fetchall()

    def controller_status(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT value FROM system_state WHERE name = ?", (CONTROLLER_STATUS,))
        return dict(json.loads(rows[0]["value"])) if rows else None

    def live_instances(self) -> list[Instance]:
        rows = self._rows(_LIVE + " ORDER BY created_at, id", (InstanceState.TERMINATED.value,))
        return [_to_instance(r) for r in rows]

    def spend(self, *, since: Timestamp, now: Timestamp, team: str | None = None) -> float:
        if self._path is None:
            return 0.0
        q = "SELECT coalesce(sum(usd), 0.0) FROM spend_ledger WHERE end_at >= ?"
        live = _LIVE + " AND launched_at IS NOT NULL"
        args: tuple[Any, ...] = (since,)
        live_args: tuple[Any, ...] = (InstanceState.TERMINATED.value,)
        if team is not None:
            q += " AND team = ?"
            live += " AND team = ?"
            args += (team,)
            live_args += (team,)
        with closing(self._connect()) as conn:
            total = float(conn.execute(q, args).fetchone()[0] or 0.0)
            for row in conn.execute(live + " ORDER BY created_at, id", live_args).fetchall():
                total += _to_instance(row).cost(now, BILLING_MINIMUM_S)
        return total

    def spend_entries(self, *, since: Timestamp, until: Timestamp | None = None) -> list[SpendEntry]:
        q = f"SELECT {_LEDGER_COLUMNS} FROM spend_ledger WHERE end_at >= ?"
        args: tuple[Any, ...] = (since,)
        if until is not None:
            q += " AND end_at < ?"
            args += (until,)
        return [
            SpendEntry(instance_id=r["instance_id"], cloud=r["cloud"], region=r["region"], purpose=r["purpose"],
                       team=r["team"], owner=r["owner"], start=r["start_at"], end=r["end_at"], usd=r["usd"])
            for r in self._rows(q + " ORDER BY id", args)
        ]

    def get_user_setting(self, user: str, key: str) -> str | None:
        rows = self._rows('SELECT value FROM user_settings WHERE "user" = ? AND "key" = ?', (user, key))
        return rows[0]["value"] if rows else None


def open_current(path: Path) -> SqliteReader | None:
    """A reader for the SQLite file ``path`` when it answers exactly as ``SqlStore`` would: the
    file is at the newest shipped revision, or absent (an empty store, and nothing is created).
    None otherwise (another revision, no version table, a file SQLite cannot read): the caller
    opens ``SqlStore``, which migrates or reports the problem as it always has."""
    if not path.exists():
        return SqliteReader(None)
    want = shipped_head()
    if want is None or not path.is_file():
        return None
    reader = SqliteReader(path)
    try:
        rows = reader._rows("SELECT version_num FROM alembic_version")
    except (sqlite3.Error, OSError):
        return None
    return reader if [r[0] for r in rows] == [want] else None
