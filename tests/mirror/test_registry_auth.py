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
