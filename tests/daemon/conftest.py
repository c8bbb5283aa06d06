"""Fixtures of the daemon tests: a moto server for this package (reset before each test, fake AWS
credentials in the environment, handed to the controller subprocesses too) and a real PostgreSQL
(tests/support/postgres.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import Controller
from tests.support.moto_server import MotoServer, fresh_moto, serve_moto
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="package")
def daemon_moto_server() -> Iterator[MotoServer]:
    yield from serve_moto()


@pytest.fixture
def moto(daemon_moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    return fresh_moto(daemon_moto_server, monkeypatch)


@pytest.fixture
def controllers(tmp_path: Path) -> Iterator[list[Controller]]:
    """Controllers a test started; any still running at the end is thawed and killed."""
    started: list[Controller] = []
    yield started
    for c in started:
        if c.proc is not None and c.proc.poll() is None:
            os.kill(c.pid, signal.SIGCONT)
            c.kill()
