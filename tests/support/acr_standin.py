"""An Azure Container Registry stand-in over real HTTP, in front of a real ``docker-registry``.

What it speaks is ACR's token protocol (Azure/acr ``docs/AAD-OAuth.md``), the part burst's
:class:`providers.registry_auth.AcrAuth` and the docker/skopeo clients use:

* ``POST /oauth2/exchange`` (form ``grant_type=access_token``, ``service``, ``access_token``,
  optional ``tenant``): an AAD access token issued by :class:`FakeAadTenant` is exchanged for an
  ACR refresh token, ``{"refresh_token": ...}``. A token with a bad signature, the wrong audience,
  a past ``exp`` or another tenant is refused with 401.
* ``/oauth2/token``, as GET (query string) or POST (form), turns a refresh token into an access
  token for the requested ``scope`` (repeated parameters or space-separated), ``{"access_token":
  ...}``, with no ``expires_in`` (ACR gives none). The refresh token comes as ``grant_type=
  refresh_token&refresh_token=..``, as ``grant_type=password`` with ``username`` the null GUID and
  ``password`` the refresh token, or as HTTP basic auth with the same pair (what ``docker login
  -u 00000000-0000-0000-0000-000000000000`` and skopeo ``--creds`` send).
* ``/v2/...``: every request needs ``Authorization: Bearer <access token>`` whose grant covers the
  repository actions the request needs (pull for GET/HEAD, push for writes and upload sessions,
  delete for manifest/blob DELETE, and pull on the ``from`` repository of a cross-repository
  mount). Otherwise 401 with ``WWW-Authenticate: Bearer realm="<base>/oauth2/token",
  service="<service>"[,scope="..."]``, the challenge ACR sends.
* Authorized requests are reverse-proxied to an unauthenticated ``docker-registry`` (the data
  plane), bodies streamed both ways, ``Location`` rewritten to point back at the stand-in, and
  every other end-to-end header (``Docker-Content-Digest``, ``Range``, ``Content-Range``,
  ``Docker-Upload-UUID`` ...) passed through unchanged.

Tokens are opaque random strings here (ACR's are JWTs, but no client looks inside them) that
expire after ``refresh_ttl_s`` / ``access_ttl_s`` of the tenant's clock; :meth:`FakeAadTenant.
advance` moves that clock for expiry tests, and :meth:`AcrStandIn.expire_tokens_on` kills every
outstanding token when a chosen request arrives (expiry in the middle of a copy). Everything is
recorded in :attr:`AcrStandIn.seen` so tests can count exchanges, token grants and proxied calls.

Plain HTTP on 127.0.0.1, like the other test registries (clients run with ``insecure=True`` /
``--tls-verify=false``).
"""

from __future__ import annotations

import base64
import http.client
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.registry import free_port

NULL_GUID = "00000000-0000-0000-0000-000000000000"
"""The user name that tells ACR "the password is an ACR refresh token"."""

AAD_AUDIENCES = ("https://management.azure.com", "https://containerregistry.azure.net")
"""AAD audiences ACR accepts at ``/oauth2/exchange`` (ARM and ACR's own resource)."""

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
        "proxy-authorization", "proxy-authenticate"}
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>.*)$")
_CHUNK = 64 * 1024


# ---- AAD --------------------------------------------------------------------------------------


class FakeAadTenant:
    """An AAD tenant in miniature: signs and checks access tokens (HS256 JWTs) and keeps the
    clock that every token in these tests is judged by (epoch seconds, shiftable)."""

    def __init__(self, tenant_id: str | None = None) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self._key = secrets.token_bytes(32)
        self._skew = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the clock forward: tokens issued before now may be expired after."""
        with self._lock:
            self._skew += seconds

    def issue(self, scope: str, ttl_s: float, *, subject: str = "burst-mirror-sp") -> tuple[str, int]:
        import jwt

        if not scope.endswith("/.default"):
            # azure-identity asks AAD for "<resource>/.default"; anything else is a caller bug.
            raise ValueError(f"AAD scope must be <resource>/.default, got {scope!r}")
        now = self.now()
        exp = int(now + ttl_s)
        claims = {"aud": scope.removesuffix("/.default").rstrip("/"), "iss": f"https://sts.windows.net/{self.tenant_id}/",
                  "tid": self.tenant_id, "oid": subject, "sub": subject, "iat": int(now), "nbf": int(now) - 60,
                  "exp": exp, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm="HS256"), exp

    def verify(self, token: str) -> dict[str, Any] | None:
        """The token's claims when it is ours, unexpired and meant for ACR; else None."""
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(token, self._key, algorithms=["HS256"], options={"verify_exp": False,
                                                "verify_nbf": False, "verify_aud": False, "verify_iat": False})
        except jwt.PyJWTError:
            return None
        # Expiry is judged by the tenant's (shiftable) clock, not PyJWT's wall clock.
        if float(claims.get("exp", 0)) <= self.now() or claims.get("tid") != self.tenant_id:
            return None
        if str(claims.get("aud", "")).rstrip("/") not in AAD_AUDIENCES:
            return None
        return claims


class FakeTokenCredential:
    """An azure-identity ``TokenCredential``: ``get_token(*scopes) -> AccessToken(token, expires_on)``.

    Every call mints a new token (``ttl_s`` may be negative to hand out expired ones) and is
    counted; ``issued`` keeps the tokens so tests can look for them in logs.
    """

    def __init__(self, tenant: FakeAadTenant, *, ttl_s: float = 3600.0) -> None:
        self.tenant = tenant
        self.ttl_s = ttl_s
        self.calls = 0
        self.scopes: list[tuple[str, ...]] = []
        self.issued: list[str] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        if len(scopes) != 1:
            # Like azure-identity's credentials: exactly one scope per request.
            raise ValueError("get_token takes exactly one scope")
        token, exp = self.tenant.issue(scopes[0], self.ttl_s)
        with self._lock:
            self.calls += 1
            self.scopes.append(scopes)
            self.issued.append(token)
        return AccessToken(token, exp)


# ---- the registry -----------------------------------------------------------------------------


@dataclass
class _Grant:
    subject: str
    service: str
    expires_at: float
    access: frozenset[tuple[str, str, str]] = frozenset()  # (type, name, action); access tokens only


@dataclass(frozen=True)
class AcrEvent:
    method: str
    path: str
    query: str
    status: int
    kind: str  # "exchange", "token", "challenge" (a 401 at /v2/), "proxy", "other"
    detail: str = ""  # token requests: the grant type; proxied requests: nothing


@dataclass
class _ExpireOn:
    method: str
    path: re.Pattern[str]
    times: int
    refresh: bool


@dataclass
class _Need:
    scopes: list[tuple[str, str, str]] = field(default_factory=list)  # (type, name, action)

    def challenge_scope(self) -> str:
        merged: dict[tuple[str, str], list[str]] = {}
        for typ, name, action in self.scopes:
            acts = merged.setdefault((typ, name), [])
            if action == "push" and "pull" not in acts:
                acts.insert(0, "pull")  # distribution (and ACR) ask for pull,push on writes
            if action not in acts:
                acts.append(action)
        return " ".join(f"{t}:{n}:{','.join(a)}" for (t, n), a in merged.items())


class AcrStandIn:
    """ACR's auth endpoints plus an authorizing reverse proxy to ``backend`` (host:port)."""

    def __init__(
        self,
        backend: str,
        tenant: FakeAadTenant,
        *,
        service: str | None = None,
        refresh_ttl_s: float = 3 * 3600,
        access_ttl_s: float = 75 * 60,
    ) -> None:
        self.backend = backend
        self.tenant = tenant
        self.port = free_port()
        self.service = service or self.host  # ACR: the login server name, e.g. myacr.azurecr.io
        self.refresh_ttl_s = refresh_ttl_s
        self.access_ttl_s = access_ttl_s
        self.seen: list[AcrEvent] = []
        self.requested_scopes: list[tuple[str, ...]] = []  # per access token granted
        self._refresh: dict[str, _Grant] = {}
        self._access: dict[str, _Grant] = {}
        self._expire_on: list[_ExpireOn] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the engine's pooled client expects

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                standin._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- lifecycle and inspection ---------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> AcrStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset_counts(self) -> None:
        with self._lock:
            self.seen.clear()
            self.requested_scopes.clear()

    def count(self, kind: str, *, method: str | None = None, path: str = "", status: int | None = None,
              detail: str | None = None) -> int:
        rx = re.compile(path)
        with self._lock:
            return sum(1 for e in self.seen if e.kind == kind and (method is None or e.method == method)
                       and rx.search(e.path) and (status is None or e.status == status)
                       and (detail is None or e.detail == detail))

    def issued_secrets(self) -> list[str]:
        """Every refresh and access token handed out (for leak checks)."""
        with self._lock:
            return [*self._refresh, *self._access]

    def expire_tokens(self, *, refresh: bool = True) -> None:
        """Every access token (and refresh token, unless ``refresh=False``) issued so far dies now."""
        with self._lock:
            self._expire_locked(refresh)

    def expire_tokens_on(self, method: str, path_regex: str, *, times: int = 1, refresh: bool = False) -> None:
        """When a matching ``/v2/`` request arrives, expire the tokens before authorizing it."""
        with self._lock:
            self._expire_on.append(_ExpireOn(method, re.compile(path_regex), times, refresh))

    def _expire_locked(self, refresh: bool) -> None:
        dead = self.tenant.now() - 1
        for g in self._access.values():
            g.expires_at = min(g.expires_at, dead)
        if refresh:
            for g in self._refresh.values():
                g.expires_at = min(g.expires_at, dead)

    # -- dispatch ---------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        if url.path == "/oauth2/exchange":
            self._exchange(h, url)
        elif url.path == "/oauth2/token":
            self._token(h, url)
        elif url.path == "/v2" or url.path.startswith("/v2/"):
            self._registry(h, url)
        else:
            self._drain(h)
            self._record(h.command, url, 404, "other")
            self._json(h, 404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})

    def _record(self, method: str, url: Any, status: int, kind: str, detail: str = "") -> None:
        with self._lock:
            self.seen.append(AcrEvent(method, url.path, url.query, status, kind, detail))

    # -- /oauth2/exchange -------------------------------------------------------------------------
    def _exchange(self, h: BaseHTTPRequestHandler, url: Any) -> None:
        form = self._form(h)
        if h.command != "POST":
            self._record(h.command, url, 405, "exchange")
            self._json(h, 405, {"errors": [{"code": "UNSUPPORTED", "message": "POST only"}]})
            return
        grant = _one(form, "grant_type")
        if grant != "access_token" or _one(form, "service") != self.service or not _one(form, "access_token"):
            self._record(h.command, url, 400, "exchange", grant)
            self._json(h, 400, {"errors": [{"code": "BAD_REQUEST", "message": "grant_type, service and access_token required"}]})
            return
        claims = self.tenant.verify(_one(form, "access_token"))
        tenant = _one(form, "tenant")
        if claims is None or (tenant and tenant != claims.get("tid")):
            self._record(h.command, url, 401, "exchange", grant)
            self._json(h, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "the AAD access token is not valid"}]})
            return
        token = "acr-rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = _Grant(str(claims.get("oid")), self.service, self.tenant.now() + self.refresh_ttl_s)
        self._record(h.command, url, 200, "exchange", grant)
        self._json(h, 200, {"refresh_token": token})

    # -- /oauth2/token ----------------------------------------------------------------------------
    def _token(self, h: BaseHTTPRequestHandler, url: Any) -> None:
        params = parse_qs(url.query, keep_blank_values=True)
        if h.command == "POST":
            for k, v in self._form(h).items():
                params.setdefault(k, []).extend(v)
        else:
            self._drain(h)
        grant = _one(params, "grant_type")
        refresh = ""
        if grant == "refresh_token":
            refresh = _one(params, "refresh_token")
        elif grant == "password":
            if _one(params, "username") == NULL_GUID:
                refresh = _one(params, "password")
        elif not grant:
            auth = h.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    user, password = "", ""
                if user == NULL_GUID:
                    refresh = password
                grant = "basic"
        else:
            self._record(h.command, url, 400, "token", grant)
            self._json(h, 400, {"errors": [{"code": "BAD_REQUEST", "message": "unsupported grant_type"}]})
            return
        service = _one(params, "service")
        with self._lock:
            g = self._refresh.get(refresh) if refresh else None
            valid = g is not None and g.expires_at > self.tenant.now() and g.service == service
        if not valid or g is None:
            self._record(h.command, url, 401, "token", grant)
            self._json(h, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "the refresh token is not valid"}]})
            return
        scopes = tuple(s for v in params.get("scope", []) for s in v.split() if s)
        access: set[tuple[str, str, str]] = set()
        for scope in scopes:
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.update((typ, name, a) for a in actions.split(",") if a in ("pull", "push", "delete", "*"))
        token = "acr-at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._access[token] = _Grant(g.subject, service, self.tenant.now() + self.access_ttl_s, frozenset(access))
            self.requested_scopes.append(scopes)
        self._record(h.command, url, 200, "token", grant)
        self._json(h, 200, {"access_token": token})

    # -- /v2/ -------------------------------------------------------------------------------------
    def _needs(self, method: str, url: Any) -> _Need:
        need = _Need()
        if url.path in ("/v2", "/v2/"):
            return need  # any valid token will do
        if url.path == "/v2/_catalog":
            need.scopes.append(("registry", "catalog", "*"))
            return need
        m = _REPO_PATH.match(url.path)
        if m is None:
            return need
        name, kind, rest = m.group("name"), m.group("kind"), m.group("rest")
        if method in ("GET", "HEAD"):
            need.scopes.append(("repository", name, "pull"))
        elif method == "DELETE" and not (kind == "blobs" and rest.startswith("uploads/")):
            need.scopes.append(("repository", name, "delete"))
        else:  # POST/PUT/PATCH, and cancelling an upload session
            need.scopes.append(("repository", name, "push"))
            q = parse_qs(url.query)
            if method == "POST" and q.get("mount") and q.get("from"):
                need.scopes.append(("repository", q["from"][0], "pull"))
        return need

    def _authorized(self, h: BaseHTTPRequestHandler, need: _Need) -> bool:
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        with self._lock:
            g = self._access.get(auth[7:].strip())
            if g is None or g.expires_at <= self.tenant.now() or g.service != self.service:
                return False
            return all(s in g.access or (s[0], s[1], "*") in g.access for s in need.scopes)

    def _registry(self, h: BaseHTTPRequestHandler, url: Any) -> None:
        with self._lock:
            for e in self._expire_on:
                if e.times > 0 and e.method == h.command and e.path.search(url.path):
                    e.times -= 1
                    self._expire_locked(e.refresh)
                    break
        need = self._needs(h.command, url)
        if not self._authorized(h, need):
            self._drain(h)
            challenge = f'Bearer realm="{self.base_url}/oauth2/token",service="{self.service}"'
            if need.scopes:
                challenge += f',scope="{need.challenge_scope()}"'
            self._record(h.command, url, 401, "challenge")
            self._json(h, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required, visit "
                                            "https://aka.ms/acr/authorization for more information."}]},
                       headers={"WWW-Authenticate": challenge, "Docker-Distribution-Api-Version": "registry/2.0"})
            return
        status = self._proxy(h)
        self._record(h.command, url, status, "proxy")

    def _proxy(self, h: BaseHTTPRequestHandler) -> int:
        headers = [(k, v) for k, v in h.headers.items()
                   if k.lower() not in _HOP and k.lower() not in ("host", "authorization", "content-length")]
        chunked_in = "chunked" in h.headers.get("Transfer-Encoding", "").lower()
        length = int(h.headers.get("Content-Length") or 0)
        conn = http.client.HTTPConnection(self.backend, timeout=120)
        try:
            # The backend builds absolute Location URLs from Host; it sees its own name here and
            # the stand-in rewrites them on the way back, as a fronting proxy must.
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.backend)
            for k, v in headers:
                conn.putheader(k, v)
            if chunked_in:
                conn.putheader("Transfer-Encoding", "chunked")
            elif length or h.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(length))
            conn.endheaders()
            if chunked_in:
                for piece in _read_chunked(h):
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            else:
                left = length
                while left > 0:
                    piece = h.rfile.read(min(_CHUNK, left))
                    if not piece:
                        raise ConnectionError("client body ended early")
                    conn.send(piece)
                    left -= len(piece)
            resp = conn.getresponse()
            h.send_response(resp.status, resp.reason)
            backend_base = f"http://{self.backend}"
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in _HOP or lk == "content-length":
                    continue
                if lk == "location" and v.startswith(backend_base):
                    v = self.base_url + v[len(backend_base):]
                h.send_header(k, v)
            announced = resp.getheader("Content-Length")
            no_body = h.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            if announced is not None:
                h.send_header("Content-Length", announced)
            elif not no_body:
                h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            if not no_body:
                while True:
                    piece = resp.read1(_CHUNK) if announced is not None else resp.read(_CHUNK)
                    if not piece:
                        break
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if announced is None else piece)
                if announced is None:
                    h.wfile.write(b"0\r\n\r\n")
            return resp.status
        finally:
            conn.close()

    # -- helpers ----------------------------------------------------------------------------------
    def _drain(self, h: BaseHTTPRequestHandler) -> None:
        """Read and drop the request body so the keep-alive connection stays in step."""
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            for _ in _read_chunked(h):
                pass
            return
        left = int(h.headers.get("Content-Length") or 0)
        while left > 0:
            piece = h.rfile.read(min(_CHUNK, left))
            if not piece:
                break
            left -= len(piece)

    def _form(self, h: BaseHTTPRequestHandler) -> dict[str, list[str]]:
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b"".join(_read_chunked(h)) if "chunked" in h.headers.get(
            "Transfer-Encoding", "").lower() else b""
        return parse_qs(body.decode(), keep_blank_values=True)

    def _json(self, h: BaseHTTPRequestHandler, status: int, doc: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        import json

        body = json.dumps(doc).encode()
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)


def _one(params: dict[str, list[str]], key: str) -> str:
    vals = params.get(key)
    return vals[0] if vals else ""


def _read_chunked(h: BaseHTTPRequestHandler) -> Iterator[bytes]:
    while True:
        line = h.rfile.readline()
        n = int(line.split(b";")[0].strip() or b"0", 16)
        if n == 0:
            while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return
        yield h.rfile.read(n)
        h.rfile.readline()


def exchange_refresh_token(base_url: str, service: str, aad_token: str, *, tenant: str | None = None) -> str:
    """``POST /oauth2/exchange`` as ``az acr login --expose-token`` does: AAD token -> ACR refresh
    token, to be used as the password of the null-GUID user (skopeo/docker)."""
    data = {"grant_type": "access_token", "service": service, "access_token": aad_token}
    if tenant:
        data["tenant"] = tenant
    resp = httpx.post(f"{base_url}/oauth2/exchange", data=data, timeout=10)
    resp.raise_for_status()
    return str(resp.json()["refresh_token"])
