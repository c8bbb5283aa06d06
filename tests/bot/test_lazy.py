"""Lazy work yields to acks (bot/lazy.py), and /burst defers its slow half without delaying the ack."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Executor, Future
from typing import Any

from slack_sdk import WebClient

from bot.app import create_app
from bot.lazy import AckGate, YieldingExecutor, gated
from bot.server import HttpServer
from burst.domain import RequestState
from burst.ondemand.service import OnDemandService
from burst.ondemand.settings import OnDemandSettings
from burst.store.memory import MemoryStore
from tests.bot.conftest import SECRET, USER, Poster
from tests.support.fake_slack import FakeSlack


def test_lazy_task_waits_while_an_ack_is_in_progress() -> None:
    gate = AckGate()
    ex = YieldingExecutor(gate, 1, quiet_s=0.01, max_defer_s=60.0)
    ran = threading.Event()
    gate.begin()
    ex.submit(ran.set)
    assert not ran.wait(0.2)  # an ack is in progress: the lazy task waits
    gate.end()
    # the ack ended and the worker stayed quiet: it runs (long before its 60 s max defer; the
    # generous wait is for a loaded machine)
    assert ran.wait(10.0)
    ex.shutdown()


def test_lazy_task_is_never_starved() -> None:
    gate = AckGate()
    ex = YieldingExecutor(gate, 1, quiet_s=0.01, max_defer_s=0.3)
    gate.begin()  # acks never stop
    t0 = time.monotonic()
    fut = ex.submit(lambda: time.monotonic())
    ran_at = fut.result(timeout=10)
    assert 0.25 <= ran_at - t0 < 5.0  # ran after its max defer, not starved (generous: loaded CI)
    gate.end()
    ex.shutdown()


def test_idle_worker_runs_lazy_work_at_once() -> None:
    gate = AckGate()
    # a long max defer: a worker that waited for it instead of running at once would take 60 s,
    # which no load explains (a 0.5 s bound against the 1 s default could fail on a loaded machine)
    ex = YieldingExecutor(gate, 2, max_defer_s=60.0)
    t0 = time.monotonic()
    assert ex.submit(lambda x: x + 1, 41).result(timeout=30) == 42
    assert time.monotonic() - t0 < 10.0
    ex.shutdown()


def test_gated_wsgi_counts_requests() -> None:
    gate = AckGate()
    seen: list[int] = []

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(gate.in_flight)
        raise RuntimeError("boom")

    app = gated(inner, gate)
    try:
        app({}, None)
    except RuntimeError:
        pass
    assert seen == [1] and gate.in_flight == 0  # counted during, released even on error


class HeldExecutor(Executor):
    """Queues submitted work until release(): shows the ack does not wait for it."""

    def __init__(self) -> None:
        self.held: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.held.append((fn, args, kwargs))
        f: Future[Any] = Future()
        f.set_result(None)
        return f

    def release(self) -> None:
        while self.held:
            fn, args, kwargs = self.held.pop(0)
            fn(*args, **kwargs)


def held_app(fake: FakeSlack, service: OnDemandService, settings: OnDemandSettings, held: HeldExecutor) -> Any:
    """The bot as production builds it (acks computed before the response), its deferred work
    parked in ``held`` until the test releases it."""
    client = WebClient(token="xoxb-test-token", base_url=fake.api_url)
    return create_app(service, settings, client=client, signing_secret=SECRET, listener_executor=held,
                      process_before_response=True)


def test_burst_ack_returns_before_the_deferred_work_and_the_reply_follows(
    fake: FakeSlack, service: OnDemandService, settings: OnDemandSettings, store: MemoryStore
) -> None:
    held = HeldExecutor()
    app = held_app(fake, service, settings, held)
    server = HttpServer(app).start()
    try:
        post = Poster(server, fake)
        status, body, key = post.command("request 1xA100 for 2h on aws")
        assert status == 200 and body == ""  # acked empty...
        assert store.requests() == [] and fake.responses(key) == []  # ...before anything was done
        assert len(held.held) == 1  # one deferred task, the command already parsed
        held.release()
        (req,) = store.requests()
        assert req.state is RequestState.AUTO_APPROVED and req.user == USER
        assert "approved" in post.reply(key)
        # help and malformed text are answered in the ack; nothing is deferred
        status, body, _ = post.command("help")
        assert status == 200 and "/burst request" in json.loads(body)["text"]
        status, body, _ = post.command("request 0xA100")
        assert status == 200 and "Usage" in json.loads(body)["text"]
        assert held.held == []
    finally:
        server.stop()


def test_deferred_failure_is_reported_to_the_user(
    fake: FakeSlack, service: OnDemandService, settings: OnDemandSettings, monkeypatch: Any
) -> None:
    held = HeldExecutor()
    app = held_app(fake, service, settings, held)

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("store down")

    monkeypatch.setattr(service, "status", broken)
    server = HttpServer(app).start()
    try:
        post = Poster(server, fake)
        status, body, key = post.command("status")
        assert status == 200 and body == ""
        held.release()
        assert "internal error" in post.reply(key)
    finally:
        server.stop()
