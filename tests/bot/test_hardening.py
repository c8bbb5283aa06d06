"""Issue 12, Slack bot: hostile HTTP against the real WSGI server (bot/frontdoor.py in front of
Bolt), replays, slow bodies, log lines, replies, the id oracle and self-approval."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from bot.frontdoor import Limits
from bot.server import HttpServer
from burst.domain import RequestState
from burst.logsafe import install_safe_logging
from burst.ondemand.errors import Denied
from burst.ondemand.service import OnDemandService, RequestArgs
from burst.store import migrate
from burst.store.memory import MemoryStore
from burst.store.sql import SqlStore
from tests.bot.conftest import (
    ADMIN,
    OTHER,
    SECRET,
    USER,
    ManualClock,
    Poster,
    SyncExecutor,
    bot_offers,
    make_settings,
)
from tests.support.fake_slack import FakeSlack, command_body, sign

FORM = "application/x-www-form-urlencoded"


def raw_exchange(server: HttpServer, head: bytes, body: bytes = b"", timeout: float = 10.0) -> tuple[int, float]:
    """Send ``head`` + ``body`` as they are; return (status, seconds to the answer)."""
    u = urlsplit(server.url)
    t0 = time.monotonic()
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=timeout) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), time.monotonic() - t0


def head(server: HttpServer, length: int, headers: dict[str, str]) -> bytes:
    lines = [f"POST {urlsplit(server.url).path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def signed_bytes(body: bytes, ts: str | None = None, ctype: str = FORM) -> dict[str, str]:
    import hashlib
    import hmac

    ts = ts or str(int(time.time()))
    sig = "v0=" + hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"content-type": ctype, "x-slack-request-timestamp": ts, "x-slack-signature": sig}


# ---- unauthenticated amplification -------------------------------------------------------------


def test_a_200_mb_body_is_refused_413_before_a_byte_is_read(server: HttpServer, store: MemoryStore) -> None:
    status, took = raw_exchange(server, head(server, 200 * 1024 * 1024, {"content-type": FORM}))
    assert status == 413 and took < 2.0  # answered without waiting for (or reading) the body
    assert store.requests() == [] and store.audit_rows() == []


def test_unsigned_input_is_401_before_parsing_and_malformed_signed_input_is_400(post: Poster, store: MemoryStore) -> None:
    nested = "payload=" + "%5B" * 100_000  # '[' x 100k: a RecursionError in any recursive parser
    latin1 = "text=caf\xe9".encode("latin-1")
    assert post.raw(nested, {"content-type": FORM})[0] == 401
    assert post.raw(nested, {"content-type": FORM, "x-slack-request-timestamp": str(int(time.time())),
                             "x-slack-signature": "v0=" + "0" * 64})[0] == 401
    assert post.raw(nested, sign(SECRET, nested))[0] == 400
    # non-UTF-8: unsigned 401, signed 400 (the body is sent as bytes)
    assert raw_exchange(post.server, head(post.server, len(latin1), {"content-type": FORM}), latin1)[0] == 401
    assert raw_exchange(post.server, head(post.server, len(latin1), signed_bytes(latin1)), latin1)[0] == 400
    # a non-numeric timestamp, signed over it or not: 400
    body = command_body("help", user=USER)
    for ts in ("abc", "1e9", "-5", "12.5", "١٢٣"):
        if ts.isascii():
            bad = sign(SECRET, body)
            bad["x-slack-request-timestamp"] = ts
            assert post.raw(body, bad)[0] == 400, ts
        assert raw_exchange(post.server, head(post.server, len(body.encode()), signed_bytes(body.encode(), ts=ts)),
                            body.encode())[0] == 400, ts
    # bad JSON in a signed payload, a form with neither command nor payload
    for bad_body in ("payload=%7Bnot+json", "payload=%5B1%2C2%5D", "foo=bar"):
        assert post.raw(bad_body, sign(SECRET, bad_body))[0] == 400, bad_body
    assert store.requests() == [] and store.audit_rows() == []


def test_content_type_must_be_what_slack_sends(post: Poster, store: MemoryStore) -> None:
    body = command_body("request 1xA100 for 1h", user=USER, response_url=post.fake.response_url("ct"))
    for ctype in ("text/plain", "application/xml", "multipart/form-data; boundary=x", ""):
        h = sign(SECRET, body)
        h["content-type"] = ctype
        assert post.raw(body, h)[0] == 415, ctype
    # JSON is for events only: a form body sent as JSON is malformed
    h = sign(SECRET, body)
    h["content-type"] = "application/json"
    assert post.raw(body, h)[0] == 400
    assert store.requests() == []
    # a real Events API envelope as JSON is accepted (Bolt answers the URL verification)
    ev = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"})
    h = sign(SECRET, ev)
    h["content-type"] = "application/json; charset=utf-8"
    status, text = post.raw(ev, h)
    assert status == 200 and "c-123" in text


def test_no_request_body_is_ever_logged(post: Poster, caplog: pytest.LogCaptureFixture) -> None:
    secret_url = "https://hooks.slack.com/commands/T0/SECRET-RESPONSE-URL"
    body = command_body("request 1xA100", user=USER, response_url=secret_url)
    h = sign(SECRET, body)
    h["x-slack-signature"] = h["x-slack-signature"][:-4] + "0000"
    with caplog.at_level(logging.DEBUG):
        assert post.raw(body, h)[0] == 401
        assert post.raw(body + "&x=\nCRITICAL+admin+approved", {"content-type": FORM})[0] == 401
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRET-RESPONSE-URL" not in text and "request 1xA100" not in text and "CRITICAL" not in text
    assert any("invalid request signature" in r.getMessage() for r in caplog.records)


def test_bolt_verification_never_logs_a_body(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    from slack_bolt.request import BoltRequest

    body = command_body("hello", user=USER, response_url="https://hooks.slack.com/SECRET-URL")
    with caplog.at_level(logging.DEBUG):
        resp = app.dispatch(BoltRequest(body=body, headers={**sign(SECRET, body), "x-slack-signature": "v0=00"}))
    assert resp.status == 401
    assert "SECRET-URL" not in "\n".join(r.getMessage() for r in caplog.records)


def test_every_log_line_escapes_control_characters() -> None:
    out = io.StringIO()
    logger = logging.getLogger("burst.test.logsafe")
    h = logging.StreamHandler(out)
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(h)
    logger.propagate = False
    try:
        install_safe_logging(logger)
        install_safe_logging(logger)  # idempotent
        logger.warning("user typed %s", "x\nCRITICAL burst.bot: admin U0ADMIN01 approved r-123456\r\x1b[2J\u202e")
        logger.warning("%s", "A" * 100_000)
    finally:
        logger.removeHandler(h)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("WARNING") and "\\nCRITICAL" in lines[0] and "\\x1b" in lines[0] and "\\u202e" in lines[0]
    assert len(lines[1]) < 5000 and "more characters not logged" in lines[1]
    assert len(h.filters) == 1


# ---- replays ----------------------------------------------------------------------------------


def test_a_replayed_signed_post_creates_nothing_more(post: Poster, store: MemoryStore, fake: FakeSlack) -> None:
    body = command_body("request 1xA100 for 2h on aws", user=USER, response_url=fake.response_url("once"))
    headers = sign(SECRET, body)
    assert post.raw(body, headers) == (200, "")
    for _ in range(5):
        assert post.raw(body, headers)[0] == 200
    assert len(store.requests()) == 1
    assert len(fake.responses("once")) == 1  # one reply: the replays did nothing at all


def test_a_slack_retry_of_a_handled_request_is_ignored(post: Poster, store: MemoryStore, fake: FakeSlack) -> None:
    body = command_body("request 1xA100 for 2h on aws", user=USER, response_url=fake.response_url("retry"))
    assert post.raw(body, sign(SECRET, body))[0] == 200
    later = sign(SECRET, body, int(time.time()) + 1)  # Slack signs a retry afresh
    status, _ = post.raw(body, {**later, "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"})
    assert status == 200
    assert len(store.requests()) == 1 and len(fake.responses("retry")) == 1


def test_a_replay_to_another_worker_finds_the_first_request(
    store: MemoryStore, service: OnDemandService, fake: FakeSlack, client: WebClient
) -> None:
    """Two HTTP servers over one store stand for two gunicorn workers: the replay cache is per
    process, the request id derived from the signed request's digest is not."""
    s = make_settings()
    servers = [
        HttpServer(create_app(OnDemandService(store, s, bot_offers(), ManualClock()), s, client=client,
                              signing_secret=SECRET, listener_executor=SyncExecutor())).start()
        for _ in range(2)
    ]
    try:
        body = command_body("request 1xA100 for 2h on aws", user=USER, response_url=fake.response_url("w"))
        headers = sign(SECRET, body)
        for srv in servers:
            assert Poster(srv, fake).raw(body, headers)[0] == 200
        assert len(store.requests()) == 1
        assert len([r for r in store.audit_rows() if r.action == "->requested"]) == 1
    finally:
        for srv in servers:
            srv.stop()


# ---- slow bodies ------------------------------------------------------------------------------


def test_slow_bodies_time_out_and_do_not_stop_the_bot(app: Any, fake: FakeSlack) -> None:
    srv = HttpServer(app, limits=Limits(read_timeout_s=1.0)).start()
    u = urlsplit(srv.url)
    slow: list[socket.socket] = []
    try:
        for _ in range(64):  # each announces 10 kB and sends 10 bytes
            s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=10)
            s.sendall(head(srv, 10_000, signed_bytes(b"x" * 10_000)) + b"command=/b")
            slow.append(s)
        # a trickler: a byte every 0.2 s would beat a per-read timeout, not the deadline
        trickle = socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=10)
        trickle.sendall(head(srv, 1000, signed_bytes(b"y" * 1000)))
        t0 = time.monotonic()
        help_body = command_body("help", user=USER)
        status, text = Poster(srv, fake).raw(help_body, sign(SECRET, help_body))
        assert status == 200 and "/burst request" in text and time.monotonic() - t0 < 2.0
        for _ in range(12):
            try:
                trickle.sendall(b"y")
            except OSError:
                break
            time.sleep(0.2)
        for s in [*slow, trickle]:
            data = s.recv(200)
            assert data.startswith(b"HTTP/1.") and b" 408 " in data[:20], data
            s.close()
        assert time.monotonic() - t0 < 6.0
    finally:
        srv.stop()


# ---- replies, the id oracle, audit, self-approval ------------------------------------------------


def test_control_and_bidi_characters_are_never_echoed(post: Poster) -> None:
    for text in ("show r-\u202eabcde", "release r-12\u200f34\x1b[2J", "request 2x\u202eA100", "extend \u2066r-1 1h",
                 "gc show gc-\u202ezz"):
        status, body, key = post.command(text)
        assert status == 200
        reply = json.loads(body)["text"] if body else post.reply(key)
        assert reply
        for ch in ("\u202e", "\u200f", "\x1b", "\u2066"):
            assert ch not in reply, (text, reply)


def test_someone_elses_request_reads_like_an_unknown_id_and_is_audited(
    service: OnDemandService, store: MemoryStore
) -> None:
    from burst.ondemand.errors import ServiceError

    r = service.request(USER, RequestArgs(1, "A100", hours=1)).request
    unknown = "r-abcdef" if r.id != "r-abcdef" else "r-fedcba"
    msgs = {}
    for verb in ("show", "release", "extend"):
        for rid in (r.id, unknown):
            with pytest.raises(ServiceError) as e:
                if verb == "show":
                    service.request_detail(OTHER, rid)
                elif verb == "release":
                    service.release(OTHER, rid)
                else:
                    service.extend(OTHER, rid, 1)
            msgs[(verb, rid == r.id)] = str(e.value).replace(rid, "<id>")
        assert msgs[(verb, True)] == msgs[(verb, False)]  # the same words for both
    denied = [a for a in store.audit_rows(subject=r.id) if a.action == "denied"]
    assert len(denied) == 3 and {a.actor for a in denied} == {OTHER}
    assert store.get_request(r.id).state is RequestState.AUTO_APPROVED  # type: ignore[union-attr]


def test_denied_admin_actions_name_their_target(post: Poster, store: MemoryStore) -> None:
    post.command("request 8xA100 for 30h")
    (req,) = store.requests()
    _, _, k = post.command(f"approve {req.id}", user=OTHER)
    assert "Only burst admins" in post.reply(k)
    (row,) = [a for a in store.audit_rows(kind="admin") if a.action == "denied"]
    assert row.subject == req.id and row.actor == OTHER


def test_an_admin_cannot_approve_their_own_over_quota_request(store: MemoryStore, offers: Any) -> None:
    svc = OnDemandService(store, make_settings(), offers, ManualClock())
    r = svc.request(ADMIN, RequestArgs(8, "A100", hours=30)).request
    assert r.state is RequestState.REQUESTED
    with pytest.raises(Denied, match="your own"):
        svc.approve(ADMIN, r.id)
    assert store.get_request(r.id).state is RequestState.REQUESTED  # type: ignore[union-attr]
    (row,) = [a for a in store.audit_rows(subject=r.id) if a.action == "denied"]
    assert row.actor == ADMIN and "own request" in row.reason
    # another admin may; and with the knob on, the admin may approve their own
    allowed = OnDemandService(store, make_settings(allow_self_approval=True), offers, ManualClock())
    assert allowed.approve(ADMIN, r.id).state is RequestState.APPROVED


def test_readme_defaults_of_the_http_and_approval_settings() -> None:
    from burst.ondemand.settings import OnDemandSettings

    d = OnDemandSettings()
    assert d.allow_self_approval is False
    assert d.http_max_body_bytes == 512 * 1024 and d.http_read_timeout_s == 5.0
    assert Limits().max_body_bytes == d.http_max_body_bytes and Limits().read_timeout_s == d.http_read_timeout_s


# ---- the quota race through the real HTTP bot ------------------------------------------------------


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    u = str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else f"sqlite:///{tmp_path}/h.db"
    migrate.upgrade(u)
    return u


@pytest.fixture
def sql_servers(sql_url: str, client: WebClient) -> Iterator[tuple[list[HttpServer], SqlStore]]:
    """Two bot 'workers', each with its own SqlStore on one database."""
    s = make_settings()
    stores = [SqlStore.from_url(sql_url, upgrade=False) for _ in range(2)]
    servers = [
        HttpServer(create_app(OnDemandService(st, s, bot_offers(), ManualClock()), s, client=client,
                              signing_secret=SECRET, listener_executor=SyncExecutor())).start()
        for st in stores
    ]
    yield servers, stores[0]
    for srv in servers:
        srv.stop()
    for st in stores:
        st.close()


def test_ten_concurrent_signed_requests_over_http_approve_at_most_the_quota(
    sql_servers: tuple[list[HttpServer], SqlStore], fake: FakeSlack
) -> None:
    servers, store = sql_servers
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def send(i: int) -> None:
        body = command_body("request 8xA100 for 2h on aws", user=USER, response_url=fake.response_url(f"race{i}"))
        headers = sign(SECRET, body)
        barrier.wait()
        statuses.append(Poster(servers[i % 2], fake).raw(body, headers)[0])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 10
    reqs = store.requests()
    assert len(reqs) == 10
    approved = [r for r in reqs if r.state in (RequestState.AUTO_APPROVED, RequestState.APPROVED)]
    assert sum(r.gpus for r in approved) <= 8 and len(approved) == 1


def test_the_bots_logging_setup_installs_the_escaping_filter() -> None:
    from burst.bot_cli import _logging
    from burst.logsafe import SafeLogFilter

    root = logging.getLogger()
    out = io.StringIO()
    h = logging.StreamHandler(out)
    root.addHandler(h)
    try:
        _logging("info")
        assert any(isinstance(f, SafeLogFilter) for f in h.filters)
        logging.getLogger("burst.bot").warning("text=%s", "a\nCRITICAL burst.bot: forged")
        assert out.getvalue().count("\n") == 1 and "\\nCRITICAL" in out.getvalue()
    finally:
        root.removeHandler(h)
        for other in root.handlers:
            for f in [f for f in other.filters if isinstance(f, SafeLogFilter)]:
                other.removeFilter(f)


def test_requests_no_listener_handles_are_404_and_never_reach_bolt(post: Poster, caplog: pytest.LogCaptureFixture) -> None:
    import urllib.parse

    cases = [
        urllib.parse.urlencode({"payload": json.dumps({"type": "shortcut", "callback_id": "SECRET-CALLBACK",
                                                       "user": {"id": USER}})}),
        command_body("anything", user=USER).replace("%2Fburst", "%2Fother"),
    ]
    with caplog.at_level(logging.DEBUG):
        for body in cases:
            assert post.raw(body, sign(SECRET, body))[0] == 404
        ev = json.dumps({"type": "event_callback", "event": {"type": "reaction_added", "user": USER}})
        h = {**sign(SECRET, ev), "content-type": "application/json"}
        assert post.raw(ev, h)[0] == 404
    assert "SECRET-CALLBACK" not in caplog.text and "unhandled" not in caplog.text.lower()
