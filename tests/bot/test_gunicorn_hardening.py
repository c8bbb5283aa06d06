"""Issue 12 under the production server: ``burst bot serve`` (gunicorn gthread workers) in a
subprocess. 64 connections that announce more than they send, or that send their headers a byte
at a time, do not stop the bot answering a real request; hostile bodies get 401/413/400, never a
500, and its log holds no traceback and no request body."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot.test_bot_cli import SIGNING, TOKEN, _env, _free_port, _post
from tests.support.fake_slack import FakeSlack, command_body, sign


def _raw(port: int, data: bytes, timeout: float = 10.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    return int(got.split(b" ", 2)[1])


def _head(length: int, headers: dict[str, str]) -> bytes:
    lines = ["POST /slack/events HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _signed(body: bytes, ts: str | None = None) -> dict[str, str]:
    ts = ts or str(int(time.time()))
    sig = "v0=" + hmac.new(SIGNING.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": ts, "x-slack-signature": sig}


@pytest.fixture
def served(tmp_path: Path, fake: FakeSlack) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = _free_port()
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(f"database_url: sqlite:///{tmp_path / 'bot.db'}\n"
                   "slack: {admins: [U0ADMIN01], admin_channel: C0ADMINS1, http_read_timeout_s: 1}\n", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "burst.bot_cli", "serve", "--config", str(cfg), "--port", str(port),
         "--workers", "2", "--threads", "16", "--slack-api-url", fake.api_url],
        env=_env(SLACK_SIGNING_SECRET=SIGNING, SLACK_BOT_TOKEN=TOKEN),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path),
    )
    help_body = command_body("help", user="U0USER001")
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            _post(port, help_body, sign(SIGNING, help_body))
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)


def _post_within(port: int, body: str, timeout: float) -> tuple[int, str]:
    """A signed POST of ``body`` whose client waits ``timeout`` seconds for the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/slack/events", body=body.encode(), headers=sign(SIGNING, body))
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def test_64_slow_bodies_do_not_stop_the_bot(served: tuple[int, subprocess.Popen[str]]) -> None:
    port, proc = served
    slow = []
    for _ in range(64):
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(_head(10_000, _signed(b"x" * 10_000)) + b"command=/b")
        slow.append(s)
    time.sleep(0.2)
    t0 = time.monotonic()
    # a trigger id of its own: the fixture's probe may have been signed in this same second, and
    # the front door rightly answers an identical signed request as a replay (200, empty body)
    help_body = command_body("help", user="U0USER001", trigger_id="64slow.help.request")
    status, text = _post_within(port, help_body, 30.0)
    took = time.monotonic() - t0
    assert status == 200 and "/burst request" in json.loads(text)["text"]
    # A few read deadlines of 1 s (64 slow bodies, 2 x 16 threads), not forever: the slow clients
    # hold their connections open until the end of the test. 3-4 s at load 8 here; 8 s was too
    # close for a loaded CI machine.
    assert took < 20.0, took
    for s in slow:
        s.close()
    out = _stop(proc)
    assert "Traceback" not in out


def test_64_slow_headers_do_not_stop_the_bot(served: tuple[int, subprocess.Popen[str]]) -> None:
    """gunicorn has no deadline of its own for a request's line and headers: a client that sends a
    header byte now and then would hold a request thread for ever, and 64 of them would hold all
    32 (bot/server.py: header_deadline_worker)."""
    port, proc = served
    slow = []
    for _ in range(64):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append(s)
    stop = threading.Event()

    def trickle() -> None:  # a header byte on each, every 0.3 s, as long as the test runs
        while not stop.is_set():
            for s in slow:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass  # the server closed it
            stop.wait(0.3)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        # Answered at all while every slow client still trickles: without a header deadline the
        # 64 hold every thread for as long as they keep sending, so this would time out. The 30 s
        # client timeout is only for a loaded machine (about 2 s here: 1 s deadlines, 2 x 16 threads).
        help_body = command_body("help", user="U0USER001", trigger_id="64slow.headers.help")
        status, text = _post_within(port, help_body, 30.0)
        assert status == 200 and "/burst request" in json.loads(text)["text"]
        # ... and each slow client was closed by the server, unanswered (it never sent a request)
        for s in slow:
            try:
                data = s.recv(200)
            except ConnectionResetError:
                data = b""
            assert data == b"", data[:100]
    finally:
        stop.set()
        trickler.join(timeout=10)
        for s in slow:
            s.close()
    out = _stop(proc)
    assert "Traceback" not in out


def test_hostile_bodies_get_4xx_never_500_nor_a_traceback(served: tuple[int, subprocess.Popen[str]]) -> None:
    port, proc = served
    latin1 = "command=/burst&text=caf\xe9&response_url=https://hooks.example/SECRET-URL".encode("latin-1")
    nested = b"payload=" + b"%5B" * 100_000
    now = str(int(time.time()))
    cases = [
        (_head(200 * 1024 * 1024, {"content-type": "application/x-www-form-urlencoded"}), 413),
        (_head(len(latin1), {"content-type": "application/x-www-form-urlencoded"}) + latin1, 401),
        (_head(len(latin1), _signed(latin1)) + latin1, 400),
        (_head(len(nested), {"content-type": "application/x-www-form-urlencoded"}) + nested, 401),
        (_head(len(nested), _signed(nested)) + nested, 400),
        (_head(len(latin1), {**_signed(latin1), "x-slack-request-timestamp": "soon"}) + latin1, 400),
        (_head(len(latin1), {**_signed(latin1, now), "content-type": "text/plain"}) + latin1, 415),
        (_head(len(latin1), {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": now,
                             "x-slack-signature": "v0=" + "0" * 64}) + latin1, 401),
    ]
    for data, want in cases:
        assert _raw(port, data) == want, (data[:120], want)
    # refused unread, the connection is closed: gunicorn does not wait for the 200 MB to drain it
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(cases[0][0])
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        assert b" 413 " in got[:20]
    out = _stop(proc)
    assert "Traceback" not in out and "SECRET-URL" not in out and " 500 " not in out
