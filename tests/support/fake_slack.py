"""A fake Slack Web API: a threaded HTTP server on 127.0.0.1 that answers like Slack and records
every call, plus the helpers to send Bolt apps signed requests.

* ``POST /api/<method>`` answers ``{"ok": true, ...}`` with what real clients read back:
  ``auth.test`` (user_id, bot_id, team_id), ``chat.postMessage`` / ``chat.update`` (channel, ts),
  ``conversations.open`` (channel.id), ``views.open`` / ``views.publish`` (view.id),
  ``usergroups.users.list`` (users), ``apps.connections.open`` (a ws:// URL, for Socket Mode).
* ``POST /response/<key>`` is a ``response_url``: 200 and recorded.
* Bodies are decoded (form or JSON; JSON-in-form fields like ``blocks`` and ``view`` are parsed).

Usage::

    fake = FakeSlack.start()
    client = WebClient(token="xoxb-test", base_url=fake.api_url)
    ... fake.calls("chat.postMessage") ... fake.responses() ...
    fake.stop()
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

BOT_USER = "UBOTBURST"
BOT_ID = "BBOTBURST"
TEAM_ID = "T0BURST01"

_JSON_FIELDS = ("blocks", "view", "attachments", "metadata")


@dataclass(frozen=True)
class Call:
    method: str  # "chat.postMessage", or "response" for a response_url POST
    params: dict[str, Any]
    path: str
    at: float


class FakeSlack:
    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ts = itertools.count(1)
        self.usergroup_members: dict[str, list[str]] = {}
        self.users_by_email: dict[str, str] = {}  # e-mail -> user id, for users.lookupByEmail
        self.ws_url = ""
        self.fail_methods: dict[str, str] = {}  # method -> Slack error code to answer with
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                params = _decode(raw, self.headers.get("Content-Type") or "")
                if self.path.startswith("/response/"):
                    fake._record(Call("response", params, self.path, time.time()))
                    self._send(200, b"ok", "text/plain")
                    return
                if not self.path.startswith("/api/"):
                    self._send(404, b"not found", "text/plain")
                    return
                method = self.path[len("/api/") :].split("?")[0]
                fake._record(Call(method, params, self.path, time.time()))
                body = fake._answer(method, params, dict(self.headers))
                self._send(200, json.dumps(body).encode(), "application/json; charset=utf-8")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack", daemon=True)

    # ---- lifecycle -------------------------------------------------------------------------
    @classmethod
    def start(cls) -> FakeSlack:
        fake = cls()
        fake._thread.start()
        return fake

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
        self.usergroup_members = {}
        self.users_by_email = {}
        self.fail_methods = {}
        self.ws_url = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.base_url}/response/{key}"

    # ---- answers ---------------------------------------------------------------------------
    def _answer(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        if method in self.fail_methods:
            return {"ok": False, "error": self.fail_methods[method]}
        ts = f"1700000000.{next(self._ts):06d}"
        if method == "auth.test":
            return {"ok": True, "url": "https://burst-test.slack.com/", "team": "burst", "user": "burst",
                    "team_id": TEAM_ID, "user_id": BOT_USER, "bot_id": BOT_ID}
        if method == "chat.postMessage":
            return {"ok": True, "channel": params.get("channel", ""), "ts": ts,
                    "message": {"text": params.get("text", ""), "ts": ts}}
        if method == "chat.update":
            return {"ok": True, "channel": params.get("channel", ""), "ts": params.get("ts", ts)}
        if method == "conversations.open":
            users = str(params.get("users", ""))
            return {"ok": True, "channel": {"id": "D" + users.split(",")[0]}}
        if method in ("views.open", "views.publish", "views.update"):
            return {"ok": True, "view": {"id": f"V{next(self._ts)}"}}
        if method == "usergroups.users.list":
            return {"ok": True, "users": self.usergroup_members.get(str(params.get("usergroup", "")), [])}
        if method == "users.lookupByEmail":
            uid = self.users_by_email.get(str(params.get("email", "")))
            return {"ok": True, "user": {"id": uid}} if uid else {"ok": False, "error": "users_not_found"}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.ws_url}
        return {"ok": True}

    # ---- records ---------------------------------------------------------------------------
    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def responses(self, key: str | None = None) -> list[Call]:
        return [c for c in self.calls("response") if key is None or c.path == f"/response/{key}"]

    def wait_for(self, method: str, count: int = 1, timeout: float = 15.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [c for c in self._calls if c.method == method]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{method}: {len(got)} of {count} calls after {timeout}s")
                self._cond.wait(left)


def _decode(raw: bytes, ctype: str) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace")
    if "json" in ctype:
        try:
            got = json.loads(text) if text else {}
            return got if isinstance(got, dict) else {"_": got}
        except ValueError:
            return {"_raw": text}
    params: dict[str, Any] = dict(parse_qsl(text, keep_blank_values=True))
    for k in _JSON_FIELDS:
        if isinstance(params.get(k), str):
            try:
                params[k] = json.loads(params[k])
            except ValueError:
                pass
    return params


# ---- signed requests for Bolt --------------------------------------------------------------------


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a request Slack signed: ``v0=hmac_sha256(secret, "v0:{ts}:{body}")``."""
    from slack_sdk.signature import SignatureVerifier

    ts = int(time.time()) if timestamp is None else timestamp
    sig = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
    assert sig is not None
    # Cross-check against the formula, so a test failure can never be a helper's own bug.
    expect = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    assert sig == expect
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": str(ts),
        "x-slack-signature": sig,
    }


def command_body(text: str, *, user: str = "U0USER001", response_url: str = "", trigger_id: str = "13345224609.738474920.8088930838d88f008e0", channel: str = "C0GENERAL") -> str:
    return urlencode(
        {
            "token": "legacy-unused",
            "team_id": TEAM_ID,
            "team_domain": "burst-test",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/burst",
            "text": text,
            "api_app_id": "A0BURST01",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


def payload_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def block_action_payload(
    action_id: str, value: str, *, user: str, channel: str, message: dict[str, Any], response_url: str = ""
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "burst-test"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0BURST01",
        "token": "legacy-unused",
        "container": {"type": "message", "message_ts": message.get("ts", ""), "channel_id": channel, "is_ephemeral": False},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "channel": {"id": channel, "name": "burst-admins"},
        "message": message,
        "response_url": response_url,
        "actions": [
            {"action_id": action_id, "block_id": f"decide_{value}", "value": value, "type": "button",
             "action_ts": "1700000000.000001", "text": {"type": "plain_text", "text": action_id}}
        ],
    }
