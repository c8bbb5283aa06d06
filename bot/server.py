"""Serving the Bolt app: over HTTP, or over Socket Mode.

HTTP: Bolt's own WSGI adapter (``slack_bolt.adapter.wsgi.SlackRequestHandler``) behind the
standard library's ``wsgiref`` server, made threaded with ``ThreadingMixIn``. That is a real HTTP
server with no new dependency; one thread per request keeps a slow request from delaying the
acks of others. Behind a TLS-terminating proxy in production (Slack requires HTTPS), or use any
other WSGI server with :func:`wsgi_app`.

Socket Mode: Bolt's adapter over slack_sdk's built-in client (no extra dependency); it needs an
app-level token (``SLACK_APP_TOKEN``, scope ``connections:write``).
"""

from __future__ import annotations

import logging
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

log = logging.getLogger("burst.bot")

EVENTS_PATH = "/slack/events"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http %s", format % args)


def wsgi_app(app: App, path: str = EVENTS_PATH) -> SlackRequestHandler:
    return SlackRequestHandler(app, path=path)


class HttpServer:
    """``HttpServer(app).start()`` serves ``POST /slack/events`` on ``host:port`` (port 0: any)."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, path: str = EVENTS_PATH) -> None:
        self._server = make_server(
            host, port, wsgi_app(app, path), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
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


def socket_mode_handler(app: App, app_token: str | None = None, **kw: Any) -> SocketModeHandler:
    """``handler.connect()`` (background) or ``handler.start()`` (blocks)."""
    return SocketModeHandler(app, app_token, **kw)
