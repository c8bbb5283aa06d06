"""Serving the Bolt app: over HTTP, or over Socket Mode.

HTTP, production: :func:`gunicorn_application`, Bolt's own WSGI adapter
(``slack_bolt.adapter.wsgi.SlackRequestHandler``) under gunicorn's ``gthread`` workers: several
worker processes (acks are CPU work under the GIL; processes use every core), each with a pool of
request threads. The app is built in each worker after the fork by a factory
(:class:`bot.runtime.BotFactory`), so no database connection crosses a fork. Bolt runs with
``process_before_response=True``: the ack listener runs in the request's own thread and its
result is the HTTP response; lazy listeners go to the worker's lazy pool after that. Behind a
TLS-terminating proxy (Slack requires HTTPS). ``burst bot serve`` starts it. gunicorn has no
deadline for a request's line and headers (a client that sends a byte of them now and then holds a
request thread for ever; its ``timeout`` is the worker's heartbeat, which gthread's main loop keeps
beating): :func:`header_deadline_worker` adds one (see there); the body's deadline is the front
door's.

HTTP, tests: :class:`HttpServer`, the same WSGI app behind the standard library's ``wsgiref``
server made threaded with ``ThreadingMixIn``, in-process and on any free port.

Socket Mode: Bolt's adapter over slack_sdk's built-in client (no extra dependency); it needs an
app-level token (``SLACK_APP_TOKEN``, scope ``connections:write``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.frontdoor import FrontDoor, Limits, Watchdog
from burst.logsafe import install_safe_logging

log = logging.getLogger("burst.bot")

EVENTS_PATH = "/slack/events"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    # Every read on the connection (request line, headers, body) times out: a client that
    # announces more than it sends cannot hold a thread forever.
    timeout = Limits().read_timeout_s

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http %s", format % args)

    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        env["burst.socket"] = self.connection  # the front door's read deadline shuts it
        return env


def wsgi_app(app: App, path: str = EVENTS_PATH, limits: Limits | None = None) -> FrontDoor:
    """Bolt's WSGI adapter behind the front door (bot/frontdoor.py: content type, size, read
    deadline, signature, well-formedness and replays are checked before Bolt sees anything).
    The signing secret is the one the app verifies with."""
    from bot.app import ROUTES

    secret = app._signing_secret  # Bolt keeps it there; the front door verifies with the same one
    return FrontDoor(SlackRequestHandler(app, path=path), secret, path, limits or Limits(), routes=ROUTES)


class HttpServer:
    """``HttpServer(app).start()`` serves ``POST /slack/events`` on ``host:port`` (port 0: any)."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, path: str = EVENTS_PATH,
                 limits: Limits | None = None) -> None:
        limits = limits or Limits()
        handler = type("_Handler", (_QuietHandler,), {"timeout": limits.read_timeout_s})
        self._server = make_server(
            host, port, wsgi_app(app, path, limits), server_class=_ThreadingWSGIServer, handler_class=handler
        )
        self.host = host
        self.port = int(self._server.server_address[1])
        self.path = path
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="burst-bot-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# The header deadline of this process's connections: one watchdog thread (started at its first
# arm, so in the worker after the fork), and the token of the deadline armed for the connection a
# request thread is reading, which the WSGI app disarms as it starts (the headers are in by then).
_HEADER_WATCHDOG = Watchdog()
_HEADER_DEADLINE = threading.local()


def _headers_in() -> None:
    token = getattr(_HEADER_DEADLINE, "token", None)
    if token is not None:
        _HEADER_DEADLINE.token = None
        _HEADER_WATCHDOG.disarm(token)


def header_deadline_worker(timeout_s: float) -> type:
    """gunicorn's ``gthread`` worker with a deadline on each request's line and headers: when a
    request thread takes a connection, its read side is shut (the front door's :class:`Watchdog`)
    unless the request reaches the WSGI app within ``timeout_s``; the parser then sees the end of
    the stream and gunicorn closes the connection (logged at debug level, no response: the client
    never finished a request). So a client that sends its headers a byte at a time, or a part of
    them and then nothing, holds a thread for ``timeout_s`` at most, and any number of them cannot
    stop the bot (gunicorn 27's own guard covers only a connection that sends nothing at all, for
    5 s). A kept-alive connection's next request gets a deadline of its own. The body's deadline
    is the front door's (``read_timeout_s``), armed when the app starts."""
    from gunicorn.workers.gthread import ThreadWorker

    class HeaderDeadlineWorker(ThreadWorker):
        def handle(self, conn: Any) -> Any:
            _HEADER_DEADLINE.token = _HEADER_WATCHDOG.arm(conn.sock, timeout_s)
            try:
                return super().handle(conn)
            finally:
                _headers_in()  # the app never ran (a bad request line, a client gone): disarm

    HeaderDeadlineWorker.__qualname__ = HeaderDeadlineWorker.__name__
    return HeaderDeadlineWorker


def _disarming_headers(app: Any) -> Any:
    """The WSGI app, first disarming the header deadline of the connection it is called for."""

    def run(environ: dict[str, Any], start_response: Any) -> Any:
        _headers_in()
        return app(environ, start_response)

    return run


def gunicorn_options(
    host: str = "127.0.0.1", port: int = 3000, *, workers: int = 2, threads: int = 16, timeout_s: int = 30,
    log_level: str = "info", header_timeout_s: float = Limits().read_timeout_s,
) -> dict[str, Any]:
    """Settings for :func:`gunicorn_application` (gunicorn's names). ``header_timeout_s``: a
    request's line and headers must arrive within this (:func:`header_deadline_worker`)."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": [bind],
        "workers": workers,
        "threads": threads,
        "worker_class": header_deadline_worker(header_timeout_s),  # gthread, with a header deadline
        "timeout": timeout_s,
        "graceful_timeout": 10,
        "keepalive": 5,
        "backlog": 2048,
        "preload_app": False,  # the app (and its database engine) is built in each worker
        "accesslog": None,  # no request lines; nothing secret is in them, but nothing is needed
        "errorlog": "-",
        "loglevel": log_level,
        "proc_name": "burst-bot",
        "forwarded_allow_ips": "127.0.0.1",
    }


def gunicorn_application(wsgi_factory: Callable[[], Any], options: dict[str, Any]) -> Any:
    """A gunicorn application serving the WSGI app ``wsgi_factory()`` builds, once in each worker
    (``BotFactory(...).wsgi``). ``.run()`` blocks until gunicorn is stopped (SIGTERM: graceful;
    SIGINT: at once)."""
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # In the worker: gunicorn's own log lines get the same escaping as the app's.
            install_safe_logging(logging.getLogger("gunicorn.error"))
            return _disarming_headers(wsgi_factory())

    return _App()


def socket_mode_handler(app: App, app_token: str | None = None, **kw: Any) -> SocketModeHandler:
    """``handler.connect()`` (background) or ``handler.start()`` (blocks)."""
    return SocketModeHandler(app, app_token, **kw)
