"""SqlStore behaviour beyond the shared contract: engine setup, persistence, URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from burst.domain import Instance, InstanceState, Market, Purpose
from burst.store.sql import DEFAULT_URL, SqlStore, make_engine


def _inst(id: str) -> Instance:
    return Instance(
        id,
        "azure",
        "westeurope",
        "",
        "Standard_ND96asr_v4",
        Market.ON_DEMAND,
        Purpose.ON_DEMAND,
        8,
        "a100",
        27.2,
    )


def test_default_url() -> None:
    assert DEFAULT_URL == "sqlite:///.burst/burst.db"


def test_sqlite_engine_pragmas_and_parent_dir(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "burst.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    assert db.exists()


def test_state_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/burst.db"
    s = SqlStore.from_url(url)
    s.create_intent(_inst("b-1"), now=5.0, actor="ctl", reason="r")
    s.transition_instance("b-1", InstanceState.LAUNCHING, now=6.0, actor="ctl", reason="r", launched_at=6.0)
    s.try_acquire_lease("leader", "a", now=6.0, ttl_s=30.0)
    s.close()

    s2 = SqlStore.from_url(url)
    try:
        got = s2.get_instance("b-1")
        assert got is not None and got.state is InstanceState.LAUNCHING and got.launched_at == 6.0
        assert got.purpose is Purpose.ON_DEMAND and got.market is Market.ON_DEMAND
        assert [r.action for r in s2.audit_rows(subject="b-1")] == ["planned->launching", "->planned"]
        assert s2.try_acquire_lease("leader", "b", now=7.0, ttl_s=30.0) is False
    finally:
        s2.close()


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/burst.db"
    a, b = SqlStore.from_url(url), SqlStore.from_url(url)
    try:
        a.create_intent(_inst("b-1"), now=1.0, actor="ctl", reason="r")
        assert b.get_instance("b-1") is not None
        b.update_instance("b-1", node_name="burst01")
        got = a.get_instance("b-1")
        assert got is not None and got.node_name == "burst01"
    finally:
        a.close()
        b.close()


def test_failed_write_rolls_back_everything(tmp_path: Path) -> None:
    s = SqlStore.from_url(f"sqlite:///{tmp_path}/burst.db")
    try:
        s.create_intent(_inst("b-1"), now=1.0, actor="ctl", reason="r")
        before = s.get_instance("b-1")
        with pytest.raises(TypeError):  # not an Instance field: rejected before anything is written
            s.transition_instance("b-1", InstanceState.LAUNCHING, now=2.0, actor="ctl", reason="r", bogus=1)
        assert s.get_instance("b-1") == before
        assert len(s.audit_rows()) == 1
    finally:
        s.close()


@pytest.mark.postgres
def test_postgres_url_roundtrip(postgres_url: str) -> None:
    s = SqlStore.from_url(postgres_url)
    try:
        assert s.engine.dialect.name == "postgresql"
        s.create_intent(_inst("b-1"), now=1.0, actor="ctl", reason="r")
        assert [i.id for i in s.live_instances()] == ["b-1"]
    finally:
        s.close()


def test_in_memory_store_is_usable_from_threads() -> None:
    import threading

    from burst.errors import BudgetExceeded
    from burst.ports import BudgetCheck

    store = SqlStore.from_url("sqlite://")
    budget = BudgetCheck("global", 3.0, 0.0, asked_usd=1.0, reserve_per_live_usd=1.0)
    admitted: list[bool] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            try:
                store.create_intent(_inst(f"b-{i}"), now=1.0, actor="a", reason="r", budget=budget)
                admitted.append(True)
            except BudgetExceeded:
                admitted.append(False)
            for _ in range(10):
                store.try_acquire_lease("leader", f"h{i}", now=1.0, ttl_s=5.0)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert admitted.count(True) == 3 and len(store.instances()) == 3
    finally:
        store.close()


@pytest.mark.postgres
def test_plain_postgresql_url_uses_psycopg3(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    s = SqlStore.from_url(url)
    try:
        assert s.engine.dialect.driver == "psycopg"
        assert s.get_instance("x") is None
    finally:
        s.close()
