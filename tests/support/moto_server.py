"""moto in server mode, behind a small WSGI middleware that can inject EC2 faults and count calls.

Real boto3 clients talk HTTP to this server, so botocore's serialiser, retry handler and XML error
parser all run exactly as they do against EC2. moto has no fault injection of its own; the
middleware adds it:

* :class:`Fault` rules answer chosen requests (``Action=RunInstances`` matched by instance type,
  subnet and/or AZ, optionally by region) with an EC2-style XML error body and an HTTP status:
  ``InsufficientInstanceCapacity`` as HTTP 500 (what EC2 sends), ``RequestLimitExceeded`` as 503,
  a plain 500 ``InternalError``, or anything else.
* Every request is counted per ``Action`` and recorded with its decoded form parameters, so a test
  can assert how many calls a code path made and what exactly it sent (e.g. ``ClientToken``,
  ``Placement.GroupName``, which moto drops from its responses).
* moto 5.2 does not implement ``CreatePlacementGroup``/``DescribePlacementGroups``/
  ``DeletePlacementGroup`` (it answers an HTML 500). The middleware emulates those three with an
  in-memory table, including EC2's ``InvalidPlacementGroup.Duplicate``; they are counted and
  recorded like the rest.

Usage::

    server = MotoServer.start()
    server.inject(Fault(code="InsufficientInstanceCapacity", instance_type="p5.48xlarge"))
    ... boto3.client("ec2", endpoint_url=server.endpoint_url) ...
    server.count("RunInstances")
    server.reset()        # POST /moto-api/reset, and clear faults, counters, placement groups
    server.stop()
"""

from __future__ import annotations

import io
import itertools
import os
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import pytest

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
}

StartResponse = Callable[..., Any]


def fake_aws_env() -> dict[str, str]:
    """Environment for boto3 in tests: fake credentials, and no developer config that could point
    boto3 at real credentials or endpoints. Apply with ``monkeypatch.setenv`` (or
    :func:`use_fake_aws_env` in a subprocess environment)."""
    return {
        **FAKE_AWS_ENV,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_PROFILE": "",
    }


def serve_moto() -> Iterator[MotoServer]:
    """Body of a moto server fixture of any scope: start, hand out, stop."""
    server = MotoServer.start()
    try:
        yield server
    finally:
        server.stop()


def fresh_moto(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """What every test on moto starts from: fake credentials and no profile in the environment
    (boto3 must never find real ones), and a server holding nothing from earlier tests."""
    for key, value in fake_aws_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server.reset()
    return server


def use_fake_aws_env(environ: dict[str, str]) -> None:
    environ.update(fake_aws_env())
    environ.pop("AWS_PROFILE", None)


def enable_instance_type_validation() -> None:
    """moto reads MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION at import time; set both the variable
    and moto's flag, so unknown instance types are rejected even if moto was imported earlier."""
    os.environ["MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION"] = "true"
    import moto.settings

    moto.settings.EC2_ENABLE_INSTANCE_TYPE_VALIDATION = True


@dataclass
class Fault:
    """Answer matching requests with an EC2 error.

    Matching: ``action`` always; each of ``instance_type``, ``subnet_id``, ``zone`` and ``region``
    only when set. ``subnet_id`` matches ``SubnetId`` or any ``NetworkInterface.N.SubnetId``;
    ``zone`` matches ``Placement.AvailabilityZone``. ``times`` limits how often the rule fires
    (``None``: every time). ``hits`` counts how often it did. ``delay_s`` holds the answer back
    (a client read timeout); ``raw_body`` replaces the XML error body (an unparseable answer).
    """

    code: str = "InsufficientInstanceCapacity"
    status: int = 500
    action: str = "RunInstances"
    instance_type: str | None = None
    subnet_id: str | None = None
    zone: str | None = None
    region: str | None = None
    times: int | None = None
    message: str = ""
    delay_s: float = 0.0  # sleep before answering (for client read timeouts)
    raw_body: bytes | None = None  # answer this instead of the EC2 XML error (e.g. an HTML 500)
    hits: int = 0

    def matches(self, action: str, region: str, params: dict[str, str]) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if action != self.action:
            return False
        if self.region is not None and region != self.region:
            return False
        if self.instance_type is not None and params.get("InstanceType") != self.instance_type:
            return False
        if self.zone is not None and params.get("Placement.AvailabilityZone") != self.zone:
            return False
        if self.subnet_id is not None:
            subnets = {v for k, v in params.items() if k == "SubnetId" or k.endswith(".SubnetId")}
            if self.subnet_id not in subnets:
                return False
        return True


def capacity_fault(**match: Any) -> Fault:
    return Fault(code="InsufficientInstanceCapacity", status=500, **match)


def throttle_fault(**match: Any) -> Fault:
    return Fault(code="RequestLimitExceeded", status=503, message="Request limit exceeded.", **match)


def internal_fault(**match: Any) -> Fault:
    return Fault(code="InternalError", status=500, message="An internal error has occurred", **match)


@dataclass(frozen=True)
class RecordedRequest:
    action: str
    region: str
    service: str
    params: dict[str, str]
    injected: str = ""  # the injected error code, "" when moto answered


def ec2_error_body(code: str, message: str, request_id: str | None = None) -> bytes:
    rid = request_id or str(uuid.uuid4())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
    ).encode()


def _credential_scope(environ: dict[str, Any]) -> tuple[str, str]:
    """(region, service) from the SigV4 Authorization header."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[2], scope[3]
    return "", ""


@dataclass
class _PlacementGroups:
    """Emulation of the placement-group API moto 5.2 lacks: region -> name -> (id, strategy)."""

    groups: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def handle(self, action: str, region: str, params: dict[str, str]) -> tuple[int, bytes] | None:
        ns = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
        table = self.groups.setdefault(region, {})
        rid = f"<requestId>{uuid.uuid4()}</requestId>"
        if action == "CreatePlacementGroup":
            name = params.get("GroupName", "")
            if not name:
                return 400, ec2_error_body("MissingParameter", "The request must contain the parameter GroupName")
            if name in table:
                return 400, ec2_error_body(
                    "InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' already exists."
                )
            table[name] = (f"pg-{next(self.ids):017x}", params.get("Strategy", "cluster"))
            gid, strategy = table[name]
            item = self._item(name, gid, strategy)
            body = f"<CreatePlacementGroupResponse {ns}>{rid}<placementGroup>{item}</placementGroup></CreatePlacementGroupResponse>"
            return 200, body.encode()
        if action == "DescribePlacementGroups":
            wanted = {v for k, v in params.items() if k.startswith("GroupName.")}
            missing = wanted - set(table)
            if missing:
                return 400, ec2_error_body(
                    "InvalidPlacementGroup.Unknown", f"The Placement Group '{sorted(missing)[0]}' is unknown."
                )
            items = "".join(
                f"<item>{self._item(n, g, s)}</item>"
                for n, (g, s) in sorted(table.items())
                if not wanted or n in wanted
            )
            body = f"<DescribePlacementGroupsResponse {ns}>{rid}<placementGroupSet>{items}</placementGroupSet></DescribePlacementGroupsResponse>"
            return 200, body.encode()
        if action == "DeletePlacementGroup":
            name = params.get("GroupName", "")
            if name not in table:
                return 400, ec2_error_body("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
            del table[name]
            return 200, f"<DeletePlacementGroupResponse {ns}>{rid}<return>true</return></DeletePlacementGroupResponse>".encode()
        return None

    @staticmethod
    def _item(name: str, gid: str, strategy: str) -> str:
        return (
            f"<groupName>{escape(name)}</groupName><strategy>{escape(strategy)}</strategy>"
            f"<state>available</state><groupId>{gid}</groupId>"
        )


class FaultInjectingMiddleware:
    """WSGI middleware in front of moto's dispatcher: faults, counters, placement groups."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self.placement_groups = _PlacementGroups()

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.calls.clear()
            self.requests.clear()
            self.placement_groups = _PlacementGroups()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        region, service = _credential_scope(environ)
        params: dict[str, str] = {}
        action = ""
        ctype = environ.get("CONTENT_TYPE", "")
        if raw and "x-www-form-urlencoded" in ctype:
            params = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
            action = params.get("Action", "")
        elif environ.get("HTTP_X_AMZ_TARGET"):
            action = environ["HTTP_X_AMZ_TARGET"].rsplit(".", 1)[-1]

        with self.lock:
            self.calls[action] += 1
            fault = next((f for f in self.faults if f.matches(action, region, params)), None)
            if fault is not None:
                fault.hits += 1
            self.requests.append(RecordedRequest(action, region, service, params, fault.code if fault else ""))
            emulated = (
                self.placement_groups.handle(action, region, params)
                if fault is None and service == "ec2"
                else None
            )

        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            body = fault.raw_body
            if body is None:
                body = ec2_error_body(fault.code, fault.message or f"Injected {fault.code} for {action}")
            return self._respond(start_response, fault.status, body, html=fault.raw_body is not None)
        if emulated is not None:
            return self._respond(start_response, *emulated)
        return self.app(environ, start_response)

    @staticmethod
    def _respond(start_response: StartResponse, status: int, body: bytes, html: bool = False) -> list[bytes]:
        reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}
        ctype = "text/html; charset=utf-8" if html else "text/xml;charset=UTF-8"
        start_response(
            f"{status} {reason.get(status, 'Error')}",
            [("Content-Type", ctype), ("Content-Length", str(len(body)))],
        )
        return [body]


class MotoServer:
    """moto's dispatcher behind :class:`FaultInjectingMiddleware`, on 127.0.0.1 with a free port."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        class _Quiet(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        enable_instance_type_validation()
        self.middleware = FaultInjectingMiddleware(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, self.middleware, threaded=True, request_handler=_Quiet
        )
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    @classmethod
    def start(cls) -> MotoServer:
        server = cls()
        server._thread.start()
        return server

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- state ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Clear moto's state (POST /moto-api/reset) and the middleware's faults and counters."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        # moto resets every backend in this request: seconds on a loaded machine, and 10 s timed
        # out once in CI (2026-12-03); the wait ends as soon as the answer comes
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()
        self.middleware.clear()

    def inject(self, *faults: Fault) -> None:
        with self.middleware.lock:
            self.middleware.faults.extend(faults)

    def clear_faults(self) -> None:
        with self.middleware.lock:
            self.middleware.faults.clear()

    def reset_counts(self) -> None:
        with self.middleware.lock:
            self.middleware.calls.clear()
            self.middleware.requests.clear()

    def count(self, action: str | None = None) -> int:
        with self.middleware.lock:
            if action is None:
                return sum(self.middleware.calls.values())
            return self.middleware.calls[action]

    @property
    def calls(self) -> Counter[str]:
        with self.middleware.lock:
            return Counter(self.middleware.calls)

    def requests(self, action: str | None = None) -> list[RecordedRequest]:
        with self.middleware.lock:
            return [r for r in self.middleware.requests if action is None or r.action == action]

    # ---- reaching moto's in-process backend (the server runs in this process) --------------

    @staticmethod
    def ec2_backend(region: str, account_id: str = "123456789012") -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[account_id][region]

    def spot_reclaim(self, instance_id: str, region: str) -> None:
        """Terminate an instance as EC2 does on a spot interruption.

        moto cannot interrupt spot capacity; this terminates the instance in moto's backend and sets
        the state reason EC2 reports for a reclaim, so a describe over HTTP shows what a real
        reclaim looks like.
        """
        from moto.ec2.models.instances import StateReason

        backend = self.ec2_backend(region)
        instance = backend.get_instance(instance_id)
        instance.terminate()
        instance._reason = "Service initiated"
        instance.state_reason = StateReason(
            "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
        )
