"""Issue 12 fuzz suite: seeded generators, >= 1,000 inputs per surface, each sent as raw bytes over
a real socket to the bot's HTTP server (front door + Bolt + listeners + service + store):

* unsigned bodies (random bytes, forms, JSON, deep nesting, huge numbers, big bodies);
* signed bodies (the same shapes, correctly signed, so they get past the signature);
* headers (content types, lengths, timestamps, signatures, retry and spoofed digest headers);
* command texts (signed ``/burst`` commands with hostile text).

For every input: no 5xx, nothing logged with a traceback (or at ERROR), bounded time and memory,
and a refused input (any status but 200) changes nothing in the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from bot.frontdoor import Limits
from bot.server import HttpServer
from burst.ondemand.service import OnDemandService
from burst.store.memory import MemoryStore
from tests.bot.conftest import ADMIN, SECRET, USER, ManualClock, SyncExecutor, bot_offers, make_settings
from tests.support.fake_slack import FakeSlack, command_body

PER_SURFACE = 1000
MAX_SECONDS_PER_INPUT = 3.0
MAX_RSS_GROWTH_KB_PER_INPUT = 64 * 1024
FORM = "application/x-www-form-urlencoded"
HOSTILE = ["<!channel>", "\u202e", "\x00", "\n", "\r\nX-Injected: 1", "%00", "'; DROP TABLE requests;--", "$(id)",
           "😀", "r-abcdef", "gc-zzzzzz", "A" * 300, "request 8xA100 for 2h on aws", "approve r-000000",
           "\udcff"[:0] + "\xff", "key set ssh-ed25519 AAAA", "1e309", "-1", "99999999999999999999"]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.exc_info or record.levelno >= logging.ERROR or "Traceback" in msg:
            self.bad.append(f"{record.levelname} {record.name}: {msg[:300]}")


@dataclass
class Rig:
    server: HttpServer
    store: MemoryStore
    fake: FakeSlack
    logs: Capture
    counts: dict[str, int] = field(default_factory=dict)
    last: bytes = b""  # the input being sent, for the failure message


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    fake = FakeSlack.start()
    store = MemoryStore()
    s = make_settings()
    svc = OnDemandService(store, s, bot_offers(), ManualClock())
    app = create_app(svc, s, client=WebClient(token="xoxb-test", base_url=fake.api_url), signing_secret=SECRET,
                     listener_executor=SyncExecutor())
    srv = HttpServer(app, limits=Limits(read_timeout_s=0.3, max_body_bytes=256 * 1024)).start()
    cap = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(cap)
    root.setLevel(logging.DEBUG)
    try:
        yield Rig(srv, store, fake, cap)
    finally:
        root.removeHandler(cap)
        root.setLevel(old_level)
        srv.stop()
        fake.stop()


def state(store: MemoryStore) -> tuple[Any, ...]:
    return (store.audit_count, len(store.requests()), len(store.challenges()),
            store.get_user_setting(USER, "ssh_public_key"), store.get_user_setting(ADMIN, "ssh_public_key"))


def signature(body: bytes, ts: str) -> str:
    return "v0=" + hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()


def send(rig: Rig, head_lines: list[bytes], body: bytes) -> int:
    path = urlsplit(rig.server.url).path.encode()
    rig.last = b"\r\n".join(head_lines) + b"\r\n\r\n" + body[:300]
    data = b"\r\n".join([b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", *head_lines]) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", rig.server.port), timeout=10) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer (413) and close before reading everything
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    assert got.startswith(b"HTTP/1."), got[:100]
    return int(got.split(b" ", 2)[1])


def check(rig: Rig, surface: str, heads: list[bytes], body: bytes, *, may_change: bool) -> None:
    """Send one input; ``may_change``: a 200 may change state (a valid signed command)."""
    before = state(rig.store)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    status = send(rig, heads, body)
    took = time.monotonic() - t0
    assert status < 500, (surface, status, rig.last)
    assert took < MAX_SECONDS_PER_INPUT, (surface, took, rig.last)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < MAX_RSS_GROWTH_KB_PER_INPUT, surface
    assert not rig.logs.bad, rig.logs.bad[:3]
    if status != 200 or not may_change:
        assert state(rig.store) == before, (surface, status, rig.last)
    rig.counts[surface] = rig.counts.get(surface, 0) + 1


# ---- generators ------------------------------------------------------------------------------


def rand_text(r: random.Random, n: int) -> str:
    pools = ["abcdefghijklmnopqrstuvwxyz0123456789 ", "<>&%=+;/?:@\"'\\{}[]", "\x00\x01\x1b\n\r\t\x7f",
             "\u202e\u200b\u2066\ufeff", "éüñ😀中文", "\ud800"[:0] + "\uffff"]
    return "".join(r.choice(r.choice(pools)) for _ in range(n))


def rand_json(r: random.Random, depth: int = 0) -> Any:
    k = r.randrange(7)
    if depth > 4 or k == 0:
        return r.choice([None, True, 1, -1.5, 10**30, "x", rand_text(r, 5)])
    if k < 4:
        return {rand_text(r, 4): rand_json(r, depth + 1) for _ in range(r.randrange(4))}
    return [rand_json(r, depth + 1) for _ in range(r.randrange(4))]


KINDS = ["block_actions", "view_submission", "view_closed", "shortcut", "message_action", "block_suggestion",
         "interactive_message", "dialog_submission", "workflow_step_edit", "x"]
FIELDS = ["user", "actions", "view", "team", "channel", "container", "message", "state", "callback_id", "trigger_id",
          "response_url", "enterprise", "api_app_id", "is_enterprise_install", "response_urls"]


def near_miss(r: random.Random) -> Any:
    """A value of roughly the right shape for a Slack field, often subtly wrong."""
    return r.choice([
        rand_json(r), {"id": r.choice([USER, ADMIN, 5, None, ""])}, [{"action_id": r.choice(["burst_approve", 3]),
                                                                      "value": r.choice(["r-abcdef", None, []])}],
        {"type": r.choice(["modal", "workflow_step", 1]), "callback_id": r.choice(["gc_confirm", None, "x"]),
         "id": "V1", "state": {"values": r.choice([{}, [], {"a": {"b": {"value": "1"}}}])},
         "private_metadata": r.choice(["", "{", json.dumps({"start_at": "x"}), rand_text(r, 20)])},
        rand_text(r, 10), None, [],
    ])


def rand_body(r: random.Random) -> bytes:
    k = r.randrange(15)
    if k >= 12:
        if k == 14:
            env = {"type": r.choice(["event_callback", "app_rate_limited", "x"]), "team_id": r.choice(["T1", 1]),
                   "event": r.choice([{"type": r.choice(["app_mention", "message", "app_home_opened", 7]),
                                       "user": near_miss(r), "text": near_miss(r), "channel": near_miss(r)}, near_miss(r)]),
                   "authorizations": r.choice([[], [{}], None, [{"user_id": "U1", "is_bot": "yes"}]])}
            return json.dumps(env).encode()
        doc = {"type": r.choice(KINDS), **{f: near_miss(r) for f in r.sample(FIELDS, r.randrange(len(FIELDS)))}}
        return ("payload=" + quote(json.dumps(doc))).encode()
    if k == 0:
        return bytes(r.randrange(256) for _ in range(r.randrange(200)))
    if k == 1:
        return ("payload=" + quote("[" * r.choice([40, 1000, 100_000]))).encode()
    if k == 2:
        return ("payload=" + quote(json.dumps(rand_json(r)))).encode()
    if k == 3:
        return json.dumps(rand_json(r)).encode()
    if k == 4:
        return json.dumps({"type": r.choice(["event_callback", "url_verification", "x"]), "event": rand_json(r),
                           "challenge": rand_text(r, 8)}).encode()
    if k == 5:
        return urlencode({rand_text(r, 3): rand_text(r, 10) for _ in range(r.randrange(6))}).encode("utf-8", "surrogatepass")
    if k == 6:
        return ("a=" + "9" * r.choice([10, 5000, 100_000])).encode()
    if k == 7:
        return b"&".join(b"k%d=v" % i for i in range(r.choice([10, 300, 5000])))
    if k == 8:
        return command_body(rand_text(r, r.randrange(40)), user=USER).encode("utf-8", "surrogatepass")
    if k == 9:
        return ("payload=" + quote(json.dumps({"type": "block_actions", "user": {"id": r.choice([USER, ADMIN, ""])},
                                               "actions": [{"action_id": r.choice(["burst_approve", "burst_reject", "x"]),
                                                            "value": r.choice(["r-abcdef", rand_text(r, 8)])}]}))).encode()
    if k == 10:
        return ("payload=" + quote(json.dumps({"type": "view_submission", "user": {"id": USER},
                                               "view": {"callback_id": rand_text(r, 6), "state": {"values": rand_json(r)}}}))).encode()
    return "caf\xe9=\xff".encode("latin-1") + bytes([r.randrange(128, 256)])


def ctype_for(body: bytes) -> bytes:
    return b"application/json" if body[:1] in (b"{", b"[") else FORM.encode()


def big(r: random.Random) -> bool:
    return r.random() < 0.01


# ---- the surfaces ------------------------------------------------------------------------------


def test_fuzz_unsigned_bodies(rig: Rig) -> None:
    r = random.Random(1201)
    for _ in range(PER_SURFACE):
        body = rand_body(r) if not big(r) else b"x" * 300_000
        heads = [b"Content-Type: " + ctype_for(body), b"Content-Length: %d" % len(body)]
        if r.random() < 0.5:
            heads += [b"X-Slack-Request-Timestamp: %d" % int(time.time()), b"X-Slack-Signature: v0=" + b"0" * 64]
        check(rig, "unsigned body", heads, body, may_change=False)
    assert rig.counts["unsigned body"] >= PER_SURFACE


def test_fuzz_signed_bodies(rig: Rig) -> None:
    r = random.Random(1202)
    for _ in range(PER_SURFACE):
        body = rand_body(r) if not big(r) else b"text=" + b"y" * 300_000
        ts = str(int(time.time()))
        heads = [b"Content-Type: " + ctype_for(body), b"Content-Length: %d" % len(body),
                 b"X-Slack-Request-Timestamp: " + ts.encode(), b"X-Slack-Signature: " + signature(body, ts).encode()]
        check(rig, "signed body", heads, body, may_change=True)
    assert rig.counts["signed body"] >= PER_SURFACE


def test_fuzz_headers(rig: Rig) -> None:
    r = random.Random(1203)
    ctypes = [b"application/x-www-form-urlencoded", b"application/json", b"APPLICATION/JSON; charset=utf-8", b"text/plain",
              b"", b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded; charset=\xff", b"\x00"]
    slow_left = 15  # bodies shorter than announced: each waits out the read deadline
    for _ in range(PER_SURFACE):
        body = command_body(r.choice(HOSTILE), user=r.choice([USER, ADMIN]),
                            response_url=rig.fake.response_url("h")).encode("utf-8", "surrogatepass")
        now = int(time.time())
        ts = r.choice([str(now), str(now - 301), str(now + 301), "", "abc", "-1", "1e9", "9" * 40,  f" {now}",
                       f"{now}.5", "\xff", str(now) + "\x00"])
        sig_ok = signature(body, ts) if ts.isascii() else ""
        sig = r.choice([sig_ok, sig_ok.upper(), "", "v0=", "v1=" + sig_ok[3:], sig_ok[:-1], "v0=" + "z" * 64,
                        rand_text(r, 20)])
        length = len(body)
        lk = r.randrange(10)
        length_text: bytes = b"%d" % length
        if lk == 0:
            length_text = r.choice([b"", b"abc", b"-5", b"1e3", b"99999999999999999999", b"0x10"])
        elif lk == 1 and slow_left > 0:
            slow_left -= 1
            length_text = b"%d" % (length + 10)
        elif lk == 2:
            length_text = b"%d" % max(0, length - r.randrange(1, 20))
        heads = [b"Content-Type: " + r.choice(ctypes)]
        if length_text or lk != 0:
            heads.append(b"Content-Length: " + length_text)
        if ts or r.random() < 0.5:
            heads.append(b"X-Slack-Request-Timestamp: " + ts.encode("utf-8", "surrogateescape"))
        if sig or r.random() < 0.5:
            heads.append(b"X-Slack-Signature: " + sig.encode("utf-8", "surrogatepass"))
        if r.random() < 0.2:
            heads.append(b"X-Slack-Retry-Num: " + r.choice([b"1", b"2", b"x", b""]))
            heads.append(b"X-Slack-Retry-Reason: " + r.choice([b"http_timeout", b"\x1b[2J", b""]))
        if r.random() < 0.2:
            heads.append(b"X-Burst-Request-Digest: " + b"0" * 64)
        check(rig, "headers", heads, body, may_change=True)
    assert rig.counts["headers"] >= PER_SURFACE


def test_fuzz_command_texts(rig: Rig) -> None:
    r = random.Random(1204)
    verbs = ["request", "extend", "release", "list", "show", "key set", "status", "budget", "gc schedule", "gc cancel",
             "gc show", "gc list", "approve", "reject", "help", ""]
    for i in range(PER_SURFACE):
        toks = [r.choice(HOSTILE) if r.random() < 0.4 else rand_text(r, r.randrange(1, 12)) for _ in range(r.randrange(6))]
        text = " ".join([r.choice(verbs), *toks])
        if r.random() < 0.05:
            text = rand_text(r, 4100)
        key = f"t{i}"
        body = command_body(text, user=r.choice([USER, ADMIN, "U0OTHER99"]),
                            response_url=rig.fake.response_url(key)).encode("utf-8", "surrogatepass")
        ts = str(int(time.time()))
        heads = [b"Content-Type: " + FORM.encode(), b"Content-Length: %d" % len(body),
                 b"X-Slack-Request-Timestamp: " + ts.encode(), b"X-Slack-Signature: " + signature(body, ts).encode()]

        check(rig, "command text", heads, body, may_change=True)
        for reply in (str(c.params.get("text", "")) for c in rig.fake.responses(key)):
            assert ":boom:" not in reply and "\u202e" not in reply and "\x1b" not in reply, (text, reply)
    assert rig.counts["command text"] >= PER_SURFACE
