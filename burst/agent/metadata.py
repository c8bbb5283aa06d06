"""Reading a spot interruption notice from the instance metadata service (AWS IMDSv2, Azure
Scheduled Events), over plain HTTP with the standard library (nothing to install on a node).

``poll()`` returns a :class:`Notice` or None, and raises :class:`MetadataError` (with a short
``kind`` used to log each failure once) for anything else: a timeout, a refused connection, an
HTTP error other than the "no notice" answer, or a body that is not what the cloud documents.
The base URL is configurable so tests point it at a local fake (tests/support/fake_metadata.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from policies.spot import parse_utc_iso

AWS_BASE = "http://169.254.169.254"
AZURE_BASE = "http://169.254.169.254"
AZURE_API_VERSION = "2020-07-01"


class MetadataError(Exception):
    """The metadata service did not give a usable answer. ``kind`` names the failure class
    (``timeout``, ``unreachable``, ``http-503``, ``garbage``...)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Notice:
    reclaim_at: float  # POSIX seconds
    source: str  # "aws:terminate", "azure:Preempt"...
    detail: str = ""  # the event id or action, for logs


class NoticeSource(Protocol):
    def poll(self, now: float) -> Notice | None: ...


def _request(req: urllib.request.Request, timeout: float, *, none_on: int | None = None) -> bytes | None:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (fixed http URL)
            body: bytes = resp.read()
            return body
    except urllib.error.HTTPError as e:
        if none_on is not None and e.code == none_on:
            return None
        raise MetadataError(f"http-{e.code}", f"{req.get_method()} {req.full_url}: {e.reason}") from None
    except TimeoutError:
        raise MetadataError("timeout", f"{req.get_method()} {req.full_url}: no answer in {timeout:.0f}s") from None
    except urllib.error.URLError as e:
        kind = "timeout" if isinstance(e.reason, TimeoutError) else "unreachable"
        raise MetadataError(kind, f"{req.get_method()} {req.full_url}: {e.reason}") from None
    except OSError as e:
        raise MetadataError("unreachable", f"{req.get_method()} {req.full_url}: {e}") from None


def _json(body: bytes, where: str) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MetadataError("garbage", f"{where}: not JSON: {body[:80]!r}") from None


class AwsImds:
    """EC2 instance metadata, IMDSv2: a session token (``PUT /latest/api/token``), then
    ``GET /latest/meta-data/spot/instance-action``; 404 means no notice."""

    def __init__(self, base_url: str = AWS_BASE, *, timeout_s: float = 2.0, token_ttl_s: int = 21600) -> None:
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.token_ttl_s = token_ttl_s
        self._token: str | None = None
        self._token_until = 0.0

    def _get_token(self, now: float) -> str:
        if self._token is None or now >= self._token_until:
            req = urllib.request.Request(
                f"{self.base}/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl_s)},
            )
            body = _request(req, self.timeout_s) or b""
            token = body.decode("ascii", "replace").strip()
            if not token:
                raise MetadataError("garbage", "PUT /latest/api/token: empty token")
            self._token, self._token_until = token, now + self.token_ttl_s / 2
        return self._token

    def poll(self, now: float) -> Notice | None:
        token = self._get_token(now)
        req = urllib.request.Request(
            f"{self.base}/latest/meta-data/spot/instance-action", headers={"X-aws-ec2-metadata-token": token}
        )
        try:
            body = _request(req, self.timeout_s, none_on=404)
        except MetadataError as e:
            if e.kind == "http-401":
                self._token = None  # expired or revoked: a fresh token next poll
            raise
        if body is None:
            return None
        doc = _json(body, "spot/instance-action")
        if not isinstance(doc, dict) or not isinstance(doc.get("time"), str) or not isinstance(doc.get("action"), str):
            raise MetadataError("garbage", f"spot/instance-action: expected {{action, time}}, got {str(doc)[:80]}")
        try:
            at = parse_utc_iso(doc["time"].rstrip("Z"))
        except ValueError:
            raise MetadataError("garbage", f"spot/instance-action: bad time {doc['time']!r}") from None
        return Notice(at, f"aws:{doc['action']}", doc["action"])


class AzureScheduledEvents:
    """Azure Scheduled Events: ``GET /metadata/scheduledevents?api-version=2020-07-01`` with
    ``Metadata: true``. A ``Preempt`` event (spot eviction) is the notice; ``NotBefore`` (RFC
    1123) is when it happens, empty meaning "any moment" (then ``now + default_lead_s``). With
    ``resource`` set, only events naming that VM count (events go to every VM of a set)."""

    def __init__(
        self, base_url: str = AZURE_BASE, *, timeout_s: float = 2.0, resource: str = "", default_lead_s: float = 30.0
    ) -> None:
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.resource = resource
        self.default_lead_s = default_lead_s

    def poll(self, now: float) -> Notice | None:
        req = urllib.request.Request(
            f"{self.base}/metadata/scheduledevents?api-version={AZURE_API_VERSION}", headers={"Metadata": "true"}
        )
        doc = _json(_request(req, self.timeout_s) or b"", "scheduledevents")
        events = doc.get("Events") if isinstance(doc, dict) else None
        if not isinstance(events, list):
            raise MetadataError("garbage", f"scheduledevents: expected {{Events: [...]}}, got {str(doc)[:80]}")
        for ev in events:
            if not isinstance(ev, dict) or ev.get("EventType") != "Preempt":
                continue
            resources = ev.get("Resources") or []
            if self.resource and isinstance(resources, list) and resources and self.resource not in resources:
                continue
            nb = ev.get("NotBefore") or ""
            try:
                at = parsedate_to_datetime(nb).timestamp() if nb else now + self.default_lead_s
            except (TypeError, ValueError):
                raise MetadataError("garbage", f"scheduledevents: bad NotBefore {nb!r}") from None
            return Notice(at, "azure:Preempt", str(ev.get("EventId", "")))
        return None
