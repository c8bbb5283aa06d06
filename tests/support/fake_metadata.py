"""A fake instance metadata service over real HTTP on 127.0.0.1 (a free port): AWS IMDSv2's
token and ``spot/instance-action``, and Azure's Scheduled Events, as their documentation shows
them. Tests set what it answers:

* ``aws_action``: ``None`` (404, no notice) or the instance-action document;
* ``azure_events``: the ``Events`` list (``DocumentIncarnation`` counts changes);
* ``fault``: ``""`` (answer normally), ``"5xx"`` (503), ``"garbage"`` (200 with a non-JSON body),
  ``"slow"`` (answers after ``slow_s``, longer than a client's timeout).

IMDSv2 rules kept: the GET needs the token from the PUT (401 otherwise); Azure needs the
``Metadata: true`` header (400 otherwise). ``requests`` counts the requests by path.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeMetadata:
    def __init__(self) -> None:
        self.aws_action: dict[str, Any] | None = None
        self.azure_events: list[dict[str, Any]] = []
        self.fault = ""
        self.slow_s = 3.0
        self.requests: Counter[str] = Counter()
        self._tokens: set[str] = set()
        self._incarnation = 1
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _fault(self) -> bool:
                if fake.fault == "5xx":
                    self._send(503, b"Service Unavailable", "text/plain")
                    return True
                if fake.fault == "garbage":
                    self._send(200, b"<html>not json{", "text/html")
                    return True
                if fake.fault == "slow":
                    time.sleep(fake.slow_s)
                return False

            def do_PUT(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                fake.requests[f"PUT {path}"] += 1
                if path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._send(400, b"", "text/plain")
                    return
                token = secrets.token_hex(8)
                fake._tokens.add(token)
                self._send(200, token.encode(), "text/plain")

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                fake.requests[f"GET {path}"] += 1
                if path == "/latest/meta-data/spot/instance-action":
                    if self.headers.get("X-aws-ec2-metadata-token") not in fake._tokens:
                        self._send(401, b"", "text/plain")
                        return
                    if self._fault():
                        return
                    if fake.aws_action is None:
                        self._send(404, b"<?xml version='1.0'?><html>404 - Not Found</html>", "text/html")
                        return
                    self._send(200, json.dumps(fake.aws_action).encode())
                    return
                if path == "/metadata/scheduledevents":
                    if self.headers.get("Metadata") != "true" or "api-version=" not in self.path:
                        self._send(400, b'{"error": "Bad request"}')
                        return
                    if self._fault():
                        return
                    doc = {"DocumentIncarnation": fake._incarnation, "Events": fake.azure_events}
                    self._send(200, json.dumps(doc).encode())
                    return
                self._send(404, b"", "text/plain")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def set_azure_events(self, events: list[dict[str, Any]]) -> None:
        self.azure_events = events
        self._incarnation += 1

    def __enter__(self) -> FakeMetadata:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
