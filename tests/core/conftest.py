"""Fixtures of the core tests: stores (in memory, and SQL on a temporary SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from burst.ports import Store
from burst.store.memory import MemoryStore


@pytest.fixture
def sql_store(tmp_path: Path) -> Iterator[Store]:
    from burst.store.sql import SqlStore

    st = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    yield st
    st.close()


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from burst.store.sql import SqlStore

    st = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    yield st
    st.close()
