"""Socket Mode: Bolt's built-in Socket Mode client against a local websockets server.

The fake Web API answers apps.connections.open with ws://127.0.0.1:PORT/...; the server sends
``hello`` and then an envelope (a slash command), and the test waits for the client's ack on the
same socket."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from websockets.sync.server import ServerConnection, serve

from bot.app import create_app
from bot.server import socket_mode_handler
from burst.domain import RequestState
from burst.ondemand.service import OnDemandService
from burst.ondemand.settings import OnDemandSettings
from burst.store.memory import MemoryStore
from tests.bot.conftest import SECRET, USER, SyncExecutor
from tests.support.fake_slack import TEAM_ID, FakeSlack


def _command(text: str, response_url: str) -> dict[str, Any]:
    return {
        "token": "legacy-unused", "team_id": TEAM_ID, "team_domain": "burst-test", "channel_id": "C0GENERAL",
        "channel_name": "general", "user_id": USER, "user_name": "user", "command": "/burst", "text": text,
        "api_app_id": "A0BURST01", "response_url": response_url, "trigger_id": "1.2.3",
    }


@pytest.fixture
def ws_server(fake: FakeSlack) -> Iterator[tuple[queue.Queue[dict[str, Any]], list[dict[str, Any]]]]:
    """Yields (envelopes to send, messages received from the client)."""
    outbox: queue.Queue[dict[str, Any]] = queue.Queue()
    received: list[dict[str, Any]] = []

    def handler(ws: ServerConnection) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0BURST01"}}))
        while True:
            try:
                env = outbox.get(timeout=0.05)
                ws.send(json.dumps(env))
            except queue.Empty:
                pass
            try:
                msg = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - client went away
                return
            received.append(json.loads(msg))

    server = serve(handler, "127.0.0.1", 0)
    port = server.socket.getsockname()[1]
    fake.ws_url = f"ws://127.0.0.1:{port}/link/?ticket=test"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield outbox, received
    server.shutdown()
    t.join(timeout=5)


def _wait(received: list[dict[str, Any]], envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in received:
            if m.get("envelope_id") == envelope_id:
                return m
        time.sleep(0.02)
    raise AssertionError(f"no ack for {envelope_id}; got {received}")


def test_socket_mode_acks_envelopes(
    fake: FakeSlack, ws_server: tuple[queue.Queue[dict[str, Any]], list[dict[str, Any]]],
    service: OnDemandService, settings: OnDemandSettings, store: MemoryStore,
) -> None:
    outbox, received = ws_server
    client = WebClient(token="xoxb-test-token", base_url=fake.api_url)
    app = create_app(service, settings, client=client, signing_secret=SECRET, listener_executor=SyncExecutor())
    handler = socket_mode_handler(app, "xapp-1-test-app-token", auto_reconnect_enabled=False, ping_interval=30)
    handler.connect()
    try:
        outbox.put({"envelope_id": "env-help", "type": "slash_commands", "accepts_response_payload": True,
                    "payload": _command("help", fake.response_url("sm-help"))})
        ack = _wait(received, "env-help")
        assert "/burst request" in ack["payload"]["text"]
        outbox.put({"envelope_id": "env-req", "type": "slash_commands", "accepts_response_payload": True,
                    "payload": _command("request 1xA100 for 1h", fake.response_url("sm-req"))})
        _wait(received, "env-req")
        fake.wait_for("response")
        (req,) = store.requests()
        assert req.state is RequestState.AUTO_APPROVED
        opened = fake.calls("apps.connections.open")
        assert opened and "xapp" not in json.dumps([c.params for c in fake.calls("chat.postMessage")])
    finally:
        handler.close()
