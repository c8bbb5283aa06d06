"""Auth schemes without a registry: challenge parsing, token caching, env/file credentials.

ACR auth runs over real HTTP against the ACR stand-in instead: see test_acr.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from burst.errors import ConfigError
from providers.oci import InvalidReference, parse_reference, select_platforms, sha256_digest
from providers.registry_auth import (
    ChallengeAuth,
    Credentials,
    RegistryAuthError,
    credentials_from_env,
    harbor_robot,
    merge_scopes,
    parse_challenge,
)
from tests.support.registry import libtrust_key_id


def test_parse_challenge() -> None:
    c = parse_challenge('Bearer realm="https://h.io/service/token",service="harbor-registry",scope="repository:a/b:pull,push"')
    assert c is not None and c.scheme == "bearer"
    assert c.params["realm"] == "https://h.io/service/token" and c.params["service"] == "harbor-registry"
    assert c.scopes == ("repository:a/b:pull,push",)
    b = parse_challenge('Basic realm="ecr"')
    assert b is not None and b.scheme == "basic"
    assert parse_challenge("") is None


def test_merge_scopes() -> None:
    assert merge_scopes(["repository:a:pull", "repository:a:push", "repository:b:pull"]) == (
        "repository:a:pull,push", "repository:b:pull")


def test_credentials_from_env(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    c = credentials_from_env("harbor.example.com", {"BURST_REGISTRY_HARBOR_EXAMPLE_COM_USERNAME": "robot$x",
                                                    "BURST_REGISTRY_HARBOR_EXAMPLE_COM_PASSWORD_FILE": str(f)})
    assert c == Credentials("robot$x", "s3cret") and "s3cret" not in repr(c)
    assert credentials_from_env("x", {}) is None
    with pytest.raises(ConfigError) as e:
        credentials_from_env("x", {"BURST_REGISTRY_X_USERNAME": "u", "BURST_REGISTRY_X_PASSWORD_FILE": str(tmp_path / "no")})
    assert "PASSWORD_FILE" in str(e.value)
    assert harbor_robot("burst", "s").username == "robot$burst"


def _token_server(counter: list[dict[str, Any]], ttl: int = 60) -> httpx.MockTransport:
    def handler(req: httpx.Request) -> httpx.Response:
        q = parse_qs(req.url.query.decode())
        counter.append({"scope": q.get("scope", []), "auth": req.headers.get("Authorization", "")})
        return httpx.Response(200, json={"token": f"t{len(counter)}", "expires_in": ttl})

    return httpx.MockTransport(handler)


def test_bearer_token_cached_per_scope_until_expiry() -> None:
    now = [0.0]
    calls: list[dict[str, Any]] = []
    client = httpx.Client(transport=_token_server(calls))
    auth = ChallengeAuth(Credentials("u", "p"), clock=lambda: now[0])
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"')
    assert auth.header(("repository:a:pull",)) is None
    assert auth.on_challenge(ch, ("repository:a:pull",), client) == "Bearer t1"
    assert calls[0]["auth"].startswith("Basic ")
    assert auth.header(("repository:a:pull",)) == "Bearer t1"
    # another scope: fetched proactively from the known realm, no 401 needed
    assert auth.header(("repository:b:pull,push",)) == "Bearer t2"
    assert calls[1]["scope"] == ["repository:b:pull,push"]
    now[0] = 31.0  # 60 s token, refreshed 30 s early
    assert auth.header(("repository:a:pull",)) == "Bearer t3"


def test_token_endpoint_refusal() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(401)))
    auth = ChallengeAuth(Credentials("u", "p"))
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="reg"')
    with pytest.raises(RegistryAuthError, match="401"):
        auth.on_challenge(ch, ("repository:a:pull",), client)


def test_references() -> None:
    r = parse_reference("harbor.example.com:8443/ml/pytorch:2.3-cuda12")
    assert (r.registry, r.repository, r.tag, r.digest) == ("harbor.example.com:8443", "ml/pytorch", "2.3-cuda12", None)
    d = "sha256:" + "b" * 64
    r = parse_reference(f"localhost/a/b@{d}")
    assert r.reference == d and r.tag is None
    assert parse_reference("team/app", default_registry="h.io").tag == "latest"
    assert str(parse_reference("h.io/team/app:v1")) == "h.io/team/app:v1"
    for bad in ("", "h.io/Team/app:v1", "h.io/app:bad tag", "h.io/app@sha256:123", "team/app", "h.io/a//b"):
        with pytest.raises(InvalidReference):
            parse_reference(bad)


def test_select_platforms_keeps_bytes_when_all_chosen() -> None:
    import json

    from providers.oci import OCI_INDEX, Manifest

    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"digest": "sha256:" + "1" * 64, "size": 1, "mediaType": "x", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:" + "2" * 64, "size": 1, "mediaType": "x",
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}
    raw = json.dumps(doc, indent=3).encode()
    m = Manifest(sha256_digest(raw), OCI_INDEX, raw, doc)
    same, entries = select_platforms(m, ["linux/amd64", "linux/arm64"])
    assert same is m and len(entries) == 2
    sub, entries = select_platforms(m, ["linux/arm64"])
    assert sub.digest != m.digest and len(entries) == 1 and sub.digest == sha256_digest(sub.raw)


def test_libtrust_key_id_shape() -> None:
    kid = libtrust_key_id(b"any der bytes")
    assert len(kid.split(":")) == 12 and all(len(p) == 4 for p in kid.split(":"))


# ---- odd answers from token endpoints, over real HTTP ---------------------------------------------


class _Answers:
    """A local HTTP server: ``handler(method, path, body) -> (status, content_type, body)``."""

    def __init__(self, handler: Any) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with outer.lock:
                    outer.calls.append((method, self.path))
                status, ctype, out = handler(method, self.path, body)
                data = out.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Cred:
    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kw: Any) -> Any:
        from types import SimpleNamespace

        self.calls += 1
        return SimpleNamespace(token=f"aad-{self.calls}", expires_on=0)


def test_token_endpoint_answering_html_is_a_clear_auth_error() -> None:
    from providers.registry_auth import AcrAuth

    login_page = "<html>corporate proxy login; password=hunter2</html>"
    srv = _Answers(lambda m, p, b: (200, "text/html", login_page))
    try:
        with httpx.Client() as client:
            challenge = parse_challenge(f'Bearer realm="{srv.url}/token",service="reg"')
            with pytest.raises(RegistryAuthError, match=r"not a JSON object \(content-type text/html\)") as err:
                ChallengeAuth(Credentials("u", "p")).on_challenge(challenge, ("repository:a:pull",), client)
            assert "hunter2" not in str(err.value)
            acr = AcrAuth("reg.azurecr.io", _Cred(), base_url=srv.url)
            with pytest.raises(RegistryAuthError, match=r"/oauth2/exchange answered 200 with a body that is not a JSON"):
                acr.on_challenge(None, ("repository:a:pull",), client)
    finally:
        srv.close()


def test_acr_exchange_is_single_flight_across_threads() -> None:
    # Four copy threads meet the same 401 at once: one AAD token, one exchange, four access tokens.
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    from providers.registry_auth import AcrAuth

    def handler(method: str, path: str, body: str) -> tuple[int, str, str]:
        if path == "/oauth2/exchange":
            time.sleep(0.2)  # long enough for every thread to be waiting on the exchange
            return 200, "application/json", json.dumps({"refresh_token": "rt"})
        return 200, "application/json", json.dumps({"access_token": "at"})

    srv = _Answers(handler)
    cred = _Cred()
    acr = AcrAuth("reg.azurecr.io", cred, base_url=srv.url)
    try:
        with httpx.Client() as client, ThreadPoolExecutor(4) as pool:
            headers = list(pool.map(lambda k: acr.on_challenge(None, (f"repository:r{k}:pull",), client), range(4)))
    finally:
        srv.close()
    assert headers == ["Bearer at"] * 4
    assert [p for _, p in srv.calls].count("/oauth2/exchange") == 1 and acr.exchanges == 1 and cred.calls == 1
    assert [p for _, p in srv.calls].count("/oauth2/token") == 4
