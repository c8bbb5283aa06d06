"""The bot's front door: a WSGI layer in front of Bolt's adapter that turns hostile HTTP away
before anything reads or parses it, under any WSGI server (the ``wsgiref`` test server and
gunicorn alike).

In order, for ``POST`` to the events path (anything else goes to Bolt, which answers 404):

1. **Content type** (415): ``application/x-www-form-urlencoded`` (slash commands, interactions)
   or ``application/json`` (the Events API), as Slack sends them.
2. **Size before reading** (411/413): a body must announce its ``Content-Length``, and one above
   ``max_body_bytes`` is refused without reading a byte of it.
3. **Headers** (401/400): no timestamp or signature is 401, as Bolt answers; a timestamp that is
   not a plain number is 400.
4. **Reading with a deadline** (408): the body must arrive within ``read_timeout_s``, however
   slowly it trickles (a :class:`Watchdog` shuts the connection's read side at the deadline), so a
   connection that announces more than it sends cannot pin a worker thread.
5. **Signature before parsing** (401): ``v0=HMAC-SHA256(secret, "v0:{ts}:{body}")`` over the raw
   bytes, timestamp within 5 minutes. Nothing about an unsigned body is parsed or logged.
6. **Well-formed** (400): UTF-8; the form or JSON parses; JSON nests at most ``max_depth`` deep;
   the content type fits the body (a form carries a command or a ``payload``, JSON is an event);
   every field Bolt reads before a listener runs has the type Bolt assumes. **Handled** (404):
   a command, action, view or event no listener handles is answered here, so Bolt never logs
   parts of it.
7. **Replays** (200, nothing done): a signed request seen before in the window (the same
   timestamp and body: a digest of the signed request), or a Slack retry (``X-Slack-Retry-Num``)
   of a body already seen, is answered 200 with ``X-Slack-No-Retry: 1`` and goes no further. The
   digest is passed on to Bolt as ``X-Burst-Request-Digest`` (any such header from outside is
   replaced), so the service can key what it records on it across worker processes.

Every refusal is a short JSON body ``{"error": "..."}`` and one log line naming the reason, never
the body. Nothing raised here reaches the server (no 500, no traceback).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger("burst.bot.http")

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
WINDOW_S = 5 * 60.0  # Slack's (and Bolt's) replay window for a request timestamp
DIGEST_HEADER = "HTTP_X_BURST_REQUEST_DIGEST"
DIGEST_HEADER_NAME = "x-burst-request-digest"  # as Bolt's request headers name it
SOCKET_KEYS = ("burst.socket", "gunicorn.socket")  # where a server puts the connection's socket
BODY_READ = "burst.body_read"

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 512 * 1024
    read_timeout_s: float = 5.0
    max_depth: int = 32
    window_s: float = WINDOW_S
    replay_entries: int = 100_000  # digests remembered (oldest forgotten first)


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


_STATUS = {400: "400 Bad Request", 401: "401 Unauthorized", 404: "404 Not Found", 408: "408 Request Timeout", 411: "411 Length Required",
           413: "413 Content Too Large", 415: "415 Unsupported Media Type", 200: "200 OK"}


class Watchdog:
    """One thread that shuts a connection's read side when its deadline passes: a blocked read
    then returns at once, however the server buffers its input."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: set[int] = set()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, timeout_s: float) -> int:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + timeout_s, self._seq, sock))
            self._live.add(self._seq)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="burst-bot-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return self._seq

    def disarm(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, token, sock = self._heap[0]
                left = when - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                if token not in self._live:
                    continue
                self._live.discard(token)
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass


class ReplayCache:
    """Digests seen in the window, bounded; thread-safe."""

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: str, now: float) -> bool:
        """True if ``key`` was recorded within the window; records it otherwise."""
        with self._lock:
            while self._seen:
                k, t = next(iter(self._seen.items()))
                if now - t <= self.window_s and len(self._seen) < self.max_entries:
                    break
                self._seen.popitem(last=False)
            if key in self._seen:
                return True
            self._seen[key] = now
            return False

    def forget(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)


def _depth_ok(text: str, max_depth: int) -> bool:
    """Does JSON ``text`` nest at most ``max_depth`` deep? A linear scan (strings skipped), so a
    hostile document never reaches the recursive parser."""
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _json(text: str, max_depth: int, what: str) -> Any:
    if not _depth_ok(text, max_depth):
        raise Refused(400, f"{what} nests deeper than {max_depth}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise Refused(400, f"{what} is not valid JSON") from None


@dataclass(frozen=True, slots=True)
class Routes:
    """What the bot handles; anything else is answered 404 by the front door, never parsed by
    Bolt (whose handling of requests nobody listens for logs parts of the body)."""

    commands: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    views: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()


_NONE = type(None)
# The fields Bolt reads of any body (slack_bolt.request.internals and friends) before a
# listener runs, with the types it assumes. A field of another type is 400 here instead of an
# exception in Bolt.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "enterprise": (dict, _NONE), "team": (dict, str, _NONE), "user": (dict, str), "channel": (dict, str, _NONE),
    "container": (dict,), "message": (dict,), "event": (dict,), "item": (dict,), "assistant_thread": (dict,),
    "previous_message": (dict,), "function_data": (dict,), "function_execution_id": (str,), "bot_access_token": (str,),
    "response_url": (str,), "response_urls": (list,), "is_enterprise_install": (bool,), "authorizations": (list,),
    "enterprise_id": (str, _NONE), "team_id": (str, _NONE), "user_id": (str,), "channel_id": (str,), "thread_ts": (str,),
    "trigger_id": (str,), "api_app_id": (str,), "token": (str,), "view": (dict,), "actions": (list,), "state": (dict,),
    "type": (str,), "callback_id": (str,), "event_id": (str,), "challenge": (str,), "id": (str,), "ts": (str,),
    "action_id": (str,), "block_id": (str,), "value": (str,), "text": (str, dict), "private_metadata": (str,),
    "values": (dict,), "is_bot": (bool,), "is_ext_shared_channel": (bool,), "blocks": (list,),
}
_NESTED = ("enterprise", "team", "user", "channel", "container", "message", "event", "item", "assistant_thread",
           "previous_message", "function_data", "view", "state")
_LISTS = ("response_urls", "authorizations", "actions")


def _check_fields(doc: dict[str, Any], where: str, depth: int = 0) -> None:
    for key, value in doc.items():
        want = _FIELD_TYPES.get(key)
        if want is not None and not isinstance(value, want):
            raise Refused(400, f"{where}{key} has the wrong type")
        if depth < 3 and key in _NESTED and isinstance(value, dict):
            _check_fields(value, f"{where}{key}.", depth + 1)
        elif key in _LISTS and isinstance(value, list):
            for item in value:
                if not isinstance(item, dict):
                    raise Refused(400, f"{where}{key} is not a list of objects")
                _check_fields(item, f"{where}{key}[].", depth + 1)


def _is_obj(x: Any, *keys: str) -> bool:
    return isinstance(x, dict) and all(isinstance(x.get(k), str) for k in keys)


def check_body(text: str, media: str, max_depth: int, routes: Routes | None = None) -> None:
    """Raise :class:`Refused` unless ``text`` is a body Slack could have sent as ``media``: 400 when
    malformed, 404 when it is well formed but nothing in ``routes`` handles it (no check of the
    routes when None)."""
    if media == JSON:
        doc = _json(text, max_depth, "body")
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise Refused(400, "a JSON body is an Events API envelope with a type")
        _check_fields(doc, "")
        kind = doc["type"]
        if kind == "url_verification":
            if not isinstance(doc.get("challenge"), str):
                raise Refused(400, "a URL verification without a challenge")
            return
        if kind != "event_callback" or not _is_obj(doc.get("event"), "type"):
            raise Refused(400 if kind == "event_callback" else 404, "not an event the bot handles")
        if routes is not None and doc["event"]["type"] not in routes.events:
            raise Refused(404, "not an event the bot handles")
        return
    try:
        fields = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=200))
    except ValueError:
        raise Refused(400, "the form is malformed") from None
    if "payload" in fields:
        doc = _json(fields["payload"], max_depth, "payload")
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise Refused(400, "payload is not an interaction with a type")
        _check_fields(doc, "payload.")
        kind = doc["type"]
        if kind == "block_actions":
            acts = doc.get("actions")
            if not acts or not all(_is_obj(a, "action_id") for a in acts):
                raise Refused(400, "payload.actions is not a list of actions")
            if routes is not None and not any(a["action_id"] in routes.actions for a in acts):
                raise Refused(404, "not an action the bot handles")
        elif kind in ("view_submission", "view_closed"):
            if not _is_obj(doc.get("view"), "type", "callback_id", "id"):
                raise Refused(400, "payload.view is not a view")
            if routes is not None and doc["view"]["callback_id"] not in routes.views:
                raise Refused(404, "not a view the bot handles")
        elif routes is not None:
            raise Refused(404, "not an interaction the bot handles")
        return
    if "command" in fields:
        if routes is not None and fields["command"] not in routes.commands:
            raise Refused(404, "not a command the bot handles")
        return
    if "ssl_check" in fields:
        return
    raise Refused(400, "the form carries no command and no payload")


class FrontDoor:
    """``FrontDoor(bolt_wsgi, signing_secret, path)``: a WSGI app. See the module docstring."""

    def __init__(self, app: WsgiApp, signing_secret: str, path: str, limits: Limits = Limits(),
                 *, routes: Routes | None = None, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.routes = routes
        self.path = path
        self.limits = limits
        self._secret = signing_secret.encode()
        self._clock = clock
        self.replays = ReplayCache(limits.window_s, limits.replay_entries)
        self.watchdog = Watchdog()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO", "") != self.path:
            return self.app(environ, start_response)
        try:
            forward = self._admit(environ)
        except Refused as e:
            log.info("http %d: %s", e.status, e.reason)
            if not environ.get(BODY_READ):
                _close_input(environ)
            return _answer(start_response, e.status, {"error": e.reason})
        except Exception as e:  # noqa: BLE001 - the front door never lets a 500 out
            log.warning("http 400: unreadable request (%s)", type(e).__name__)
            return _answer(start_response, 400, {"error": "unreadable request"})
        if forward is None:
            return _answer(start_response, 200, None, extra=[("X-Slack-No-Retry", "1")])
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            if status.startswith("5"):
                # Bolt failed on a signed but odd request before any listener (ours catch all
                # their errors): the request is what is wrong, so 400, and say so.
                log.warning("http 400: Bolt answered %s to a signed request; answering 400", status[:3])
                status = _STATUS[400]
            return start_response(status, headers, exc_info) if exc_info is not None else start_response(status, headers)

        try:
            return self.app(forward, start)
        except Exception as e:  # noqa: BLE001 - Bolt itself failed on a signed but odd request
            log.warning("http 400: Bolt could not handle the request (%s)", type(e).__name__)
            return _answer(start_response, 400, {"error": "the request could not be handled"})

    def _admit(self, environ: dict[str, Any]) -> dict[str, Any] | None:
        lim = self.limits
        media = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if media not in (FORM, JSON):
            raise Refused(415, f"content type must be {FORM} or {JSON}")
        length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
        if not length_text:
            raise Refused(411, "a Content-Length is required")
        if not length_text.isdigit() or len(length_text) > 12:
            raise Refused(400, "Content-Length is not a number")
        length = int(length_text)
        if length > lim.max_body_bytes:
            raise Refused(413, f"body larger than {lim.max_body_bytes} bytes")
        ts_text = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or "")
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE") or "")
        if not ts_text or not signature:
            raise Refused(401, "the request is not signed")
        if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 12:
            raise Refused(400, "the request timestamp is not a number")
        raw = self._read(environ, length)
        environ[BODY_READ] = True
        now = self._clock()
        if abs(now - int(ts_text)) > lim.window_s:
            raise Refused(401, "the request timestamp is outside the 5-minute window")
        expected = "v0=" + hmac.new(self._secret, b"v0:" + ts_text.encode() + b":" + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise Refused(401, "invalid request signature")
        # Signed by Slack from here on: still checked, since a bug or a replay may be hostile too.
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "the body is not UTF-8") from None
        check_body(text, media, lim.max_depth, self.routes)
        digest = hashlib.sha256(b"v0:" + ts_text.encode() + b":" + raw).hexdigest()
        body_digest = hashlib.sha256(raw).hexdigest()
        retry = str(environ.get("HTTP_X_SLACK_RETRY_NUM") or "")
        if self.replays.seen("s:" + digest, now):
            log.info("http 200: replay of a signed request already handled; ignored")
            return None
        body_seen = self.replays.seen("b:" + body_digest, now)
        if retry and body_seen:
            reason = str(environ.get("HTTP_X_SLACK_RETRY_REASON") or "unknown")[:40]
            log.info("http 200: Slack retry %s (%s) of a request already handled; ignored", retry[:4], reason.encode("ascii", "replace").decode())
            return None
        forward = dict(environ)
        forward["wsgi.input"] = _Body(raw)
        forward["CONTENT_LENGTH"] = str(len(raw))
        forward[DIGEST_HEADER] = digest
        return forward

    def _read(self, environ: dict[str, Any], length: int) -> bytes:
        stream = environ.get("wsgi.input")
        if stream is None:
            raise Refused(400, "no body")
        sock = next((environ[k] for k in SOCKET_KEYS if isinstance(environ.get(k), socket.socket)), None)
        token = self.watchdog.arm(sock, self.limits.read_timeout_s) if sock is not None else None
        deadline = time.monotonic() + self.limits.read_timeout_s
        chunks: list[bytes] = []
        got = 0
        try:
            while got < length:
                if time.monotonic() > deadline:
                    raise Refused(408, f"the body did not arrive within {self.limits.read_timeout_s:g} s")
                try:
                    chunk = stream.read(min(65536, length - got))
                except Exception:  # noqa: BLE001 - a timeout, a reset, the server's own error
                    chunk = b""
                if not chunk:
                    if time.monotonic() >= deadline - 0.05:
                        raise Refused(408, f"the body did not arrive within {self.limits.read_timeout_s:g} s")
                    raise Refused(400, "the body is shorter than its Content-Length")
                chunks.append(chunk)
                got += len(chunk)
        finally:
            if token is not None:
                self.watchdog.disarm(token)
        return b"".join(chunks)


def _close_input(environ: dict[str, Any]) -> None:
    """A refused request whose body was not read: shut the connection's read side, so the server
    does not drain (or wait for) the rest of it to keep the connection alive (gunicorn would)."""
    for k in SOCKET_KEYS:
        sock = environ.get(k)
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
            return


class _Body:
    """The body already read, as a WSGI input stream."""

    def __init__(self, raw: bytes) -> None:
        import io

        self._io = io.BytesIO(raw)

    def read(self, size: int = -1) -> bytes:
        return self._io.read(size if size is not None else -1)

    def readline(self, size: int = -1) -> bytes:
        return self._io.readline(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return self._io.readlines(hint)

    def __iter__(self) -> Any:
        return iter(self._io)


def _answer(start_response: Any, status: int, doc: dict[str, str] | None, *,
            extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = b"" if doc is None else json.dumps(doc).encode()
    headers = [("Content-Type", "application/json" if doc is not None else "text/plain"),
               ("Content-Length", str(len(body))), *(extra or [])]
    start_response(_STATUS.get(status, f"{status} Error"), headers)
    return [body]
