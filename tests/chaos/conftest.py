"""Fixtures for the chaos tests: one moto server (behind the fault middleware) for this package,
reset before each test, with fake AWS credentials in the environment (also handed to the
controller subprocesses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.moto_server import MotoServer, fresh_moto, serve_moto


@pytest.fixture(scope="package")
def chaos_moto_server() -> Iterator[MotoServer]:
    yield from serve_moto()


@pytest.fixture
def moto(chaos_moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    return fresh_moto(chaos_moto_server, monkeypatch)
