"""ECR control plane against moto in server mode (moto has no /v2/ data plane)."""

from __future__ import annotations

import base64
import datetime as dt
import time
from typing import Any

import boto3
import httpx
import pytest

from burst.errors import MirrorError
from providers.ecr import EcrTokenProvider, decode_authorization_token, ensure_repository, registry_host
from providers.registry_auth import RegistryAuthError


@pytest.fixture
def ecr(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    httpx.post(f"{moto_url}/moto-api/reset")
    return boto3.client("ecr", region_name="us-east-1", endpoint_url=moto_url)


def test_ensure_repository_is_idempotent(ecr: Any) -> None:
    uri = ensure_repository("us-east-1", "burst/team/app", client=ecr, tags={"burst:cluster": "test"})
    again = ensure_repository("us-east-1", "burst/team/app", client=ecr)
    assert uri == again
    assert uri.endswith(".dkr.ecr.us-east-1.amazonaws.com/burst/team/app")
    repos = ecr.describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["burst/team/app"]


def test_ensure_repository_maps_errors(ecr: Any) -> None:
    with pytest.raises(MirrorError):
        ensure_repository("us-east-1", "Bad Name!", client=ecr)


def test_token_is_decoded_and_cached(ecr: Any) -> None:
    now = [time.time()]
    tp = EcrTokenProvider("us-east-1", client=ecr, clock=lambda: now[0])
    creds = tp()
    assert creds.username == "AWS" and creds.password
    assert tp.fetches == 1
    # moto's expiresAt is in 2015: treated as valid for a short fixed period ...
    assert tp() is creds and tp.fetches == 1
    now[0] += 4 * 60
    tp()
    assert tp.fetches == 1
    now[0] += 2 * 60  # ... then refreshed
    tp()
    assert tp.fetches == 2
    tp(True)  # a 401 forces a refresh
    assert tp.fetches == 3
    header = tp.auth().header(())
    assert header is not None and header.startswith("Basic ")


def test_token_refreshed_before_expiry() -> None:
    now = [1_700_000_000.0]

    class Fake:
        calls = 0

        def get_authorization_token(self, **kw: Any) -> dict[str, Any]:
            Fake.calls += 1
            return {"authorizationData": [{
                "authorizationToken": base64.b64encode(b"AWS:pw%d" % Fake.calls).decode(),
                "expiresAt": dt.datetime.fromtimestamp(now[0] + 12 * 3600, dt.UTC),
                "proxyEndpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            }]}

    tp = EcrTokenProvider("eu-west-1", client=Fake())
    tp._clock = lambda: now[0]
    assert tp().password == "pw1"
    now[0] += 11.5 * 3600
    assert tp().password == "pw1"
    now[0] += 0.3 * 3600  # inside the 15-minute margin
    assert tp().password == "pw2"


def test_decode_and_hosts() -> None:
    assert decode_authorization_token(base64.b64encode(b"AWS:abc:def").decode()).password == "abc:def"
    with pytest.raises(RegistryAuthError):
        decode_authorization_token("!!!")
    assert registry_host("123456789012", "us-west-2") == "123456789012.dkr.ecr.us-west-2.amazonaws.com"
    assert registry_host("123456789012", "cn-north-1").endswith(".amazonaws.com.cn")
    with pytest.raises(ValueError):
        registry_host("12", "us-west-2")
