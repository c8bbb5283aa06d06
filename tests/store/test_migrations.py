"""Alembic migrations on fresh SQLite and PostgreSQL: upgrade, downgrade to base and back, and
the models (burst/store/models.py) against the migrated schema with alembic's compare_metadata."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from burst.store import migrate
from burst.store.models import Base
from burst.store.sql import SqlStore, make_engine

TABLES = {
    "instances",
    "audit",
    "spend_ledger",
    "offer_backoffs",
    "ondemand_requests",
    "grand_challenges",
    "mirrors",
    "user_settings",
    "leases",
    "budget_locks",
    "orphan_sightings",
    "system_state",
}
HEAD = "0004"  # the newest revision shipped


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/dir/burst.db"
    return str(request.getfixturevalue("postgres_url"))


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def diff(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_models_and_tables_agree() -> None:
    assert set(Base.metadata.tables) == TABLES


def test_upgrade_downgrade_upgrade(url: str) -> None:
    assert migrate.head() == HEAD
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == HEAD
    assert tables(url) == TABLES | {"alembic_version"}
    migrate.upgrade(url)  # already at head: nothing to do
    assert migrate.current(url) == HEAD

    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert tables(url) == {"alembic_version"}

    migrate.upgrade(url)
    assert migrate.current(url) == HEAD
    assert diff(url) == []


def test_migrated_schema_matches_models(url: str) -> None:
    migrate.upgrade(url)
    assert diff(url) == []


def test_compare_metadata_notices_a_difference(url: str) -> None:
    """The comparison is not vacuous: a schema one index short is reported."""
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_audit_kind")
    finally:
        engine.dispose()
    found = diff(url)
    assert [d[0] for d in found] == ["add_index"]
    assert found[0][1].name == "ix_audit_kind"


def test_from_url_upgrades_unless_told_not_to(url: str) -> None:
    store = SqlStore.from_url(url, upgrade=False)
    try:
        assert "instances" not in tables(url)
    finally:
        store.close()
    store = SqlStore.from_url(url)
    try:
        assert migrate.current(url) == HEAD
        assert store.get_instance("x") is None
    finally:
        store.close()


@pytest.mark.postgres
def test_concurrent_upgrades_take_turns(postgres_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            migrate.upgrade(postgres_url)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert migrate.current(postgres_url) == HEAD
    assert diff(postgres_url) == []


def test_current_does_not_create_a_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "absent" / "burst.db"
    assert migrate.current(f"sqlite:///{db}") is None
    assert not db.exists() and not db.parent.exists()


def test_in_memory_sqlite_store() -> None:
    store = SqlStore.from_url("sqlite://")
    try:
        store.set_user_setting("U1", "k", "v", now=1.0)
        assert store.get_user_setting("U1", "k") == "v"
    finally:
        store.close()


def test_0002_moves_system_state_out_of_user_settings_and_back(url: str) -> None:
    """A deployment at 0001 kept orphan sightings and the last tick's summary under magic users in
    user_settings; upgrading keeps both (an orphan's grace period survives), downgrading restores
    them."""
    migrate.upgrade(url, "0001")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO user_settings (\"user\", key, value, updated_at) VALUES "
                "('_orphans', 'i-0abc', '1700000000.5', 1700000000.5), "
                "('_orphans', 'i-0bad', 'garbage', 1700000100.0), "
                "('_controller', 'last_tick', '{\"at\": 1700000200.0, \"pending\": 3}', 1700000200.0), "
                "('U1', 'ssh_key', 'ssh-ed25519 AAAA', 1.0)"
            )
    finally:
        engine.dispose()
    migrate.upgrade(url)
    store = SqlStore.from_url(url)
    try:
        assert store.orphan_first_seen("i-0abc", 1e10) == 1700000000.5
        assert store.orphan_first_seen("i-0bad", 1e10) == 1700000100.0
        assert store.controller_status() == {"at": 1700000200.0, "pending": 3}
        assert store.get_user_setting("_orphans", "i-0abc") is None
        assert store.get_user_setting("_controller", "last_tick") is None
        assert store.get_user_setting("U1", "ssh_key") == "ssh-ed25519 AAAA"
    finally:
        store.close()
    migrate.downgrade(url, "0001")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = {
                (u, k): v
                for u, k, v in conn.exec_driver_sql('SELECT "user", key, value FROM user_settings').all()
            }
    finally:
        engine.dispose()
    assert float(rows[("_orphans", "i-0abc")]) == 1700000000.5
    assert json.loads(rows[("_controller", "last_tick")]) == {"at": 1700000200.0, "pending": 3}
    assert rows[("U1", "ssh_key")] == "ssh-ed25519 AAAA"


def test_0003_converts_challenge_rows_written_before_it(url: str) -> None:
    """A challenge row of the 0001 shape (preempted_jobs as ids, phase 'preempted') reads back
    as PreemptedJob records in the same order, phase 'preempting', and downgrades back."""
    from burst.domain import ChallengeState, PreemptedJob

    migrate.upgrade(url, "0002")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO grand_challenges (id, name, start_at, duration_s, command, created_by, state,"
                " note, preempted_jobs) VALUES ('gc-1', 'n', 10.0, 60.0, 'c', 'A', 'preempted', '',"
                " '[\"j9\", \"j2\"]')"
            )
    finally:
        engine.dispose()
    migrate.upgrade(url)
    store = SqlStore.from_url(url)
    try:
        gc = store.get_challenge("gc-1")
        assert gc is not None and gc.state is ChallengeState.PREEMPTING
        assert [(p.job_id, p.order) for p in gc.preempted_jobs] == [("j9", 0), ("j2", 1)]
        assert gc.preempted_jobs[0] == PreemptedJob("j9", "", 0, 0, 0)
        assert (gc.nodes, gc.reserved, gc.notices, gc.phases) == (0, False, (), ())
    finally:
        store.close()
    migrate.downgrade(url, "0002")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            row = conn.exec_driver_sql("SELECT state, preempted_jobs FROM grand_challenges").one()
    finally:
        engine.dispose()
    assert row[0] == "preempted"
    assert (row[1] if isinstance(row[1], list) else __import__("json").loads(row[1])) == ["j9", "j2"]


def test_0004_gives_a_held_lease_epoch_1_and_the_next_holder_epoch_2(url: str) -> None:
    """A lease written before fencing (no epoch) reads as epoch 1 after the upgrade; its holder
    keeps it until it expires, and a takeover then moves the epoch on."""
    migrate.upgrade(url, "0003")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO leases (name, holder, expires_at) VALUES ('controller', 'old', 100.0)")
    finally:
        engine.dispose()
    migrate.upgrade(url)
    store = SqlStore.from_url(url)
    try:
        lease = store.lease("controller")
        assert lease is not None and (lease.holder, lease.expires_at, lease.epoch) == ("old", 100.0, 1)
        assert store.try_acquire_lease("controller", "new", now=50.0, ttl_s=10.0) is False
        assert store.try_acquire_lease("controller", "new", now=100.0, ttl_s=10.0) is True
        lease = store.lease("controller")
        assert lease is not None and (lease.holder, lease.epoch) == ("new", 2)
    finally:
        store.close()
    migrate.downgrade(url, "0003")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT holder FROM leases").scalar_one() == "new"
    finally:
        engine.dispose()
