"""Prometheus metrics of the daemon, scraped over real HTTP."""

from __future__ import annotations

import socket
import urllib.request

from burst.daemon import Daemon
from burst.metrics import REGISTRY, serve
from tests.core.world import T0, TICK, World


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_daemon_exports_tick_and_fleet_metrics() -> None:
    w = World(nodes=1)
    w.submit("fill", 8, 100_000)
    w.submit("j1", 8, 600)
    before = REGISTRY.get_sample_value("burst_actions_total", {"kind": "Launch"}) or 0.0
    d = Daemon(w.controller, w.clock, w.store, holder="me", metrics=True, before_tick=w.step)
    for k in range(1, 6):
        w.clock.set(T0 + k * TICK)
        assert d.run_once() is not None
    assert (REGISTRY.get_sample_value("burst_actions_total", {"kind": "Launch"}) or 0.0) == before + 1
    assert REGISTRY.get_sample_value("burst_leader") == 1.0
    assert REGISTRY.get_sample_value("burst_cloud_gpus") == 8.0
    port = _free_port()
    serve(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "burst_ticks_total" in body and 'burst_live_instances{state="joined"}' in body
    # a standby reports itself as such
    other = Daemon(w.controller, w.clock, w.store, holder="other", metrics=True)
    assert other.run_once() is None
    assert REGISTRY.get_sample_value("burst_leader") == 0.0
