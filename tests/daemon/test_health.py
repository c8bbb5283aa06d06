"""/healthz, /readyz and /metrics on the metrics port, over real HTTP (burst/metrics.py serve)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from burst.daemon import Daemon
from burst.errors import QueueUnavailable
from burst.metrics import serve
from tests.core.world import T0, World


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def get(server: ThreadingHTTPServer, path: str, method: str = "GET") -> tuple[int, str, str]:
    host, port = server.server_address[:2]
    req = urllib.request.Request(f"http://{host!s}:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def daemon(world: World) -> Daemon:
    return Daemon(world.controller, FakeClock(T0), world.store, holder="me", metrics=True)


@pytest.fixture
def server(daemon: Daemon) -> Iterator[ThreadingHTTPServer]:
    srv = serve(0, ready=daemon.readiness)
    yield srv
    srv.shutdown()
    srv.server_close()


def test_healthz_answers_while_the_process_lives(server: ThreadingHTTPServer) -> None:
    assert get(server, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    assert get(server, "/healthz", "HEAD")[:2] == (200, "text/plain; charset=utf-8")


def test_metrics_are_prometheus_text_and_other_paths_are_404(server: ThreadingHTTPServer, daemon: Daemon) -> None:
    daemon.run_once()
    code, ctype, body = get(server, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=")
    assert "burst_leader 1.0" in body and "burst_ticks_total" in body
    code, _, body = get(server, "/nope")
    assert code == 404 and "/readyz" in body
    assert get(server, "/")[0] == 404  # prometheus-client's own server would answer metrics here


def test_readyz_before_the_first_tick_and_for_the_leader(server: ThreadingHTTPServer, daemon: Daemon) -> None:
    assert get(server, "/readyz")[::2] == (503, "not ready: no tick yet\n")
    assert daemon.run_once() is not None
    assert get(server, "/readyz")[::2] == (200, "ready: leader\n")


def test_readyz_for_a_standby_that_can_read_the_queue(world: World, daemon: Daemon) -> None:
    assert daemon.run_once() is not None
    other = Daemon(world.controller, FakeClock(T0), world.store, holder="other", metrics=True)
    srv = serve(0, ready=other.readiness)
    try:
        assert other.run_once() is None
        assert get(srv, "/readyz")[::2] == (200, "ready: standby\n")
    finally:
        srv.shutdown()
        srv.server_close()


def test_readyz_fails_after_ready_ticks_without_a_readable_queue(
    server: ThreadingHTTPServer, daemon: Daemon, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert daemon.run_once() is not None

    def down() -> None:
        raise QueueUnavailable("slurmctld: connection refused")

    monkeypatch.setattr(world.cluster, "snapshot", down)
    daemon.run_once()
    daemon.run_once()
    assert get(server, "/readyz")[0] == 200  # two bad ticks: still within READY_TICKS (3)
    daemon.run_once()
    assert get(server, "/readyz")[::2] == (503, "not ready: leader: queue not read for 3 ticks\n")
    monkeypatch.undo()
    daemon.run_once()
    assert get(server, "/readyz")[::2] == (200, "ready: leader\n")


def test_readyz_fails_while_stopping(server: ThreadingHTTPServer, daemon: Daemon) -> None:
    daemon.run_once()
    daemon.stop()
    assert get(server, "/readyz")[::2] == (503, "not ready: stopping\n")
    assert get(server, "/healthz")[0] == 200
