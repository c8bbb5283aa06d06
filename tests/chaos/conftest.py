"""Fixtures for the chaos tests: one moto server (behind the fault middleware) for this package,
reset before each test, with fake AWS credentials in the environment (also handed to the
controller subprocesses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.moto_server import MotoServer, fake_aws_env


@pytest.fixture(scope="package")
def chaos_moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture
def moto(chaos_moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for key, value in fake_aws_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE")
    chaos_moto_server.reset()
    return chaos_moto_server
