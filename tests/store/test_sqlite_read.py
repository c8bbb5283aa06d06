"""The stdlib SQLite reader of ``burst status`` (burst/store/sqlite_read.py) answers exactly as
:class:`burst.store.sql.SqlStore` on the same database, and an absent file exactly as an empty
store; it hands out a reader only for a current store, and never creates or writes a file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from burst.domain import Instance, InstanceState, Market, Purpose
from burst.store.sql import SqlStore
from burst.store.sqlite_read import SqliteReader, open_current

I = InstanceState  # noqa: E741
NOW = 1_800_000_000.0


def _inst(id: str, **kw: Any) -> Instance:
    base: dict[str, Any] = dict(
        id=id, cloud="aws", region="us-east-1", zone="use1-az1", instance_type="p4d.24xlarge",
        market=Market.SPOT, purpose=Purpose.OVERFLOW, gpus=8, gpu_model="a100", price_per_hour=36.0,
        owner="alice", team="vision", for_jobs=("j1", "j2"),
    )
    base.update(kw)
    return Instance(**base)


def _populate(st: SqlStore) -> None:
    """Instances in every kind of state (planned, launching, joined with a node, terminated into
    the ledger, a failed launch), teams, a controller summary and budget overrides."""
    st.create_intent(_inst("b-planned", created_at=NOW - 50), now=NOW - 50, actor="t", reason="r")
    st.create_intent(_inst("b-joined", team="nlp", price_per_hour=12.5, created_at=NOW - 4000), now=NOW - 4000,
                     actor="t", reason="r")
    st.transition_instance("b-joined", I.LAUNCHING, now=NOW - 3990, actor="t", reason="r", launched_at=NOW - 3990,
                           cloud_id="i-1")
    st.transition_instance("b-joined", I.JOINED, now=NOW - 3700, actor="t", reason="r", joined_at=NOW - 3700,
                           node_name="burst-aws-1")
    st.create_intent(_inst("b-gone", for_jobs=(), purpose=Purpose.ON_DEMAND, created_at=NOW - 90_000),
                     now=NOW - 90_000, actor="t", reason="r")
    st.transition_instance("b-gone", I.LAUNCHING, now=NOW - 89_000, actor="t", reason="r", launched_at=NOW - 89_000)
    st.transition_instance("b-gone", I.TERMINATING, now=NOW - 80_000, actor="t", reason="r")
    st.transition_instance("b-gone", I.TERMINATED, now=NOW - 79_000, actor="t", reason="r")
    st.create_intent(_inst("b-failed", created_at=NOW - 30), now=NOW - 30, actor="t", reason="r")
    st.transition_instance("b-failed", I.LAUNCH_FAILED, now=NOW - 20, actor="t", reason="r", last_error="no capacity")
    st.create_intent(_inst("b-launching", market=Market.ON_DEMAND, created_at=NOW - 600), now=NOW - 600,
                     actor="t", reason="r")
    st.transition_instance("b-launching", I.LAUNCHING, now=NOW - 590, actor="t", reason="r", launched_at=NOW - 590)
    st.set_controller_status({"at": NOW, "pending": 3, "actions": ["Launch", "Launch", "Drain"], "x": {"y": [1.5]}},
                             now=NOW)
    st.set_user_setting("_budgets", "limits", json.dumps({"site:month": {"hard": 100.0}, "team:nlp:day": {"soft": 5.0}}),
                        now=NOW)


def _answers(st: Any) -> dict[str, Any]:
    return {
        "status": st.controller_status(),
        "live": st.live_instances(),
        "spend": [st.spend(since=s, now=NOW) for s in (0.0, NOW - 86_400, NOW - 1000, NOW + 1)],
        "spend_team": [st.spend(since=0.0, now=NOW, team=t) for t in ("nlp", "vision", "none")],
        "entries": [st.spend_entries(since=0.0), st.spend_entries(since=NOW), st.spend_entries(since=0.0, until=NOW - 79_500)],
        "settings": [st.get_user_setting("_budgets", k) for k in ("limits", "wanted")],
    }


def test_reader_answers_as_sql_store(tmp_path: Path) -> None:
    path = tmp_path / "burst.db"
    st = SqlStore.from_url(f"sqlite:///{path}")
    try:
        _populate(st)
        want = _answers(st)
    finally:
        st.close()
    reader = open_current(path)
    assert isinstance(reader, SqliteReader)
    got = _answers(reader)
    assert got == want
    assert [i.id for i in got["live"]] == ["b-joined", "b-launching", "b-planned", "b-failed"]  # not trivial
    assert got["entries"][0] and got["spend"][0] > 0 and got["status"]["pending"] == 3
    # equal floats to the last bit, and the same types (an int where SqlStore gives a float would print differently)
    assert [type(v) for v in got["spend"]] == [float] * 4
    assert [repr(v) for v in got["spend"]] == [repr(v) for v in want["spend"]]


def test_an_absent_file_reads_as_an_empty_store_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / ".burst" / "burst.db"
    reader = open_current(path)
    assert reader is not None
    empty = SqlStore.from_url("sqlite://")
    try:
        assert _answers(reader) == _answers(empty)
    finally:
        empty.close()
    assert list(tmp_path.iterdir()) == []


def test_only_a_current_store_gets_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "burst.db"
    SqlStore.from_url(f"sqlite:///{path}").close()
    assert open_current(path) is not None
    with sqlite3.connect(path) as c:
        c.execute("UPDATE alembic_version SET version_num = '0001'")
    assert open_current(path) is None  # SqlStore migrates it
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    assert open_current(garbage) is None  # SqlStore reports it
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()  # an empty SQLite file: no version table
    assert open_current(plain) is None


def test_reading_writes_nothing_and_leaves_no_wal_files(tmp_path: Path) -> None:
    path = tmp_path / "burst.db"
    st = SqlStore.from_url(f"sqlite:///{path}")
    try:
        _populate(st)
    finally:
        st.close()
    before = sorted(p.name for p in tmp_path.iterdir()), path.read_bytes()
    reader = open_current(path)
    assert reader is not None
    _answers(reader)
    assert (sorted(p.name for p in tmp_path.iterdir()), path.read_bytes()) == before


def test_a_file_removed_after_the_check_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "burst.db"
    SqlStore.from_url(f"sqlite:///{path}").close()
    reader = open_current(path)
    assert reader is not None
    path.unlink()
    with pytest.raises(sqlite3.Error):
        reader.live_instances()
    assert not path.exists()
