"""ACR targets end to end: the real copy engine and MirrorService with :class:`AcrAuth`, over real
HTTP, against the ACR stand-in (tests/support/acr_standin.py) in front of a real docker-registry.

The AAD side is a fake ``TokenCredential`` whose tokens the stand-in checks, so the whole chain
runs: AAD token -> ``/oauth2/exchange`` -> refresh token -> ``/oauth2/token`` -> per-scope access
token -> ``/v2/``. skopeo, logged in the way ``docker login`` does it (the null-GUID user with an
ACR refresh token), is the independent check that what landed is the same image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from burst.errors import MirrorError, TransientMirrorError
from burst.store.memory import MemoryStore
from providers.mirror_service import MirrorService, MirrorSettings
from providers.oci import Endpoint, ImageRef, OciCopier, parse_reference
from providers.registry_auth import ARM_SCOPE, AcrAuth, RegistryAuthError
from tests.mirror.conftest import HARBOR_SECRET, HARBOR_USER, Env, Sleeps
from tests.support.acr_standin import (
    NULL_GUID,
    AcrStandIn,
    FakeAadTenant,
    FakeTokenCredential,
    exchange_refresh_token,
)
from tests.support.registry import RegistryServer, inspect_digest, inspect_format_digest, inspect_raw

pytestmark = pytest.mark.registry

REGION = "eastus-test"
SRC_CREDS = (HARBOR_USER, HARBOR_SECRET)
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Acr:
    tenant: FakeAadTenant
    standin: AcrStandIn
    backend: RegistryServer
    cred: FakeTokenCredential  # the one burst uses; its calls are counted

    @property
    def host(self) -> str:
        return self.standin.host

    def endpoint(self, cred: FakeTokenCredential | None = None) -> Endpoint:
        auth = AcrAuth(self.host, cred or self.cred, base_url=self.standin.base_url)
        return Endpoint(self.host, auth, insecure=True)

    def skopeo_creds(self) -> tuple[str, str]:
        """Log in as ``az acr login --expose-token`` + ``docker login`` would: an AAD token from a
        separate credential (so burst's counted one is untouched) exchanged for a refresh token."""
        aad = FakeTokenCredential(self.tenant).get_token(ARM_SCOPE)
        return NULL_GUID, exchange_refresh_token(self.standin.base_url, self.standin.service, aad.token)

    def writes(self) -> int:
        return sum(self.standin.count("proxy", method=m) for m in WRITES)

    def exchanges(self) -> int:
        return self.standin.count("exchange", status=200)

    def catalog(self) -> list[str]:
        """Repositories at the backend, read directly (not through the stand-in)."""
        resp = httpx.get(f"http://{self.backend.host}/v2/_catalog", params={"n": "1000"}, timeout=10)
        return list(resp.json().get("repositories") or [])


@pytest.fixture(scope="module")
def acr_backend(registry_env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    # registry_env first: it skips when the tools are missing and pushes the source images.
    backend = RegistryServer(tmp_path_factory.mktemp("acr") / "backend", name="acr-backend").start()
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture
def acr(acr_backend: RegistryServer) -> Iterator[Acr]:
    tenant = FakeAadTenant()
    standin = AcrStandIn(acr_backend.host, tenant).start()
    try:
        yield Acr(tenant, standin, acr_backend, FakeTokenCredential(tenant))
    finally:
        standin.stop()


@pytest.fixture
def prefix() -> str:
    # One shared backend for the module: a prefix per test keeps the repositories apart.
    return f"burst-{os.urandom(3).hex()}"


def acr_service(env: Env, acr: Acr, prefix: str, sleeps: Sleeps, cred: FakeTokenCredential | None = None) -> MirrorService:
    """The production wiring for an ``azure:<region>`` target: ``kind: acr`` with ``registry``
    pointing at the stand-in; ``insecure`` makes AcrAuth talk plain http to its /oauth2 too."""
    settings = MirrorSettings.model_validate({
        "source": {"registry": env.harbor_proxy.host, "insecure": True, "auth": {"method": "basic", "credentials": "harbor"}},
        "targets": {f"azure:{REGION}": {"kind": "acr", "registry": acr.host, "insecure": True, "repository_prefix": prefix}},
    })
    environ = {"BURST_REGISTRY_HARBOR_USERNAME": HARBOR_USER, "BURST_REGISTRY_HARBOR_PASSWORD": HARBOR_SECRET}
    return MirrorService(settings, MemoryStore(), environ=environ, azure_credential=cred or acr.cred, sleep=sleeps)


def src(env: Env, path: str) -> ImageRef:
    return parse_reference(f"{env.harbor_proxy.host}/{path}")


# ---- the stand-in itself ------------------------------------------------------------------------


def test_standin_speaks_acr_token_protocol(acr: Acr) -> None:
    base, service = acr.standin.base_url, acr.standin.service
    with httpx.Client(base_url=base, timeout=10) as c:
        r = c.get("/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == f'Bearer realm="{base}/oauth2/token",service="{service}"'
        r = c.post("/v2/team/app/blobs/uploads/", params={"mount": "sha256:" + "a" * 64, "from": "team/base"})
        assert 'scope="repository:team/app:pull,push repository:team/base:pull"' in r.headers["WWW-Authenticate"]

        aad = acr.cred.get_token(ARM_SCOPE).token
        foreign = FakeTokenCredential(FakeAadTenant()).get_token(ARM_SCOPE).token
        expired = FakeTokenCredential(acr.tenant, ttl_s=-1).get_token(ARM_SCOPE).token
        for bad in ({"access_token": foreign}, {"access_token": expired}, {"access_token": aad, "tenant": "other"}):
            r = c.post("/oauth2/exchange", data={"grant_type": "access_token", "service": service, **bad})
            assert r.status_code == 401, bad
        rt = exchange_refresh_token(base, service, aad, tenant=acr.tenant.tenant_id)

        scope = "repository:team/app:pull"
        forms = {
            "POST refresh_token": lambda: c.post("/oauth2/token", data={
                "grant_type": "refresh_token", "service": service, "scope": scope, "refresh_token": rt}),
            "GET refresh_token": lambda: c.get("/oauth2/token", params={
                "grant_type": "refresh_token", "service": service, "scope": scope, "refresh_token": rt}),
            "POST password": lambda: c.post("/oauth2/token", data={
                "grant_type": "password", "service": service, "scope": scope, "username": NULL_GUID, "password": rt}),
            "GET basic": lambda: c.get("/oauth2/token", params={"service": service, "scope": scope}, auth=(NULL_GUID, rt)),
        }
        tokens = []
        for name, call in forms.items():
            r = call()
            assert r.status_code == 200, name
            assert set(r.json()) == {"access_token"}, name  # ACR gives no expires_in
            tokens.append(r.json()["access_token"])
        assert c.get("/oauth2/token", params={"service": service, "scope": scope}, auth=("someone", rt)).status_code == 401
        assert c.post("/oauth2/token", data={"grant_type": "refresh_token", "service": "other.azurecr.io",
                                             "scope": scope, "refresh_token": rt}).status_code == 401

        at = tokens[0]
        assert c.get("/v2/", headers={"Authorization": f"Bearer {at}"}).status_code == 200  # proxied
        # pull granted, push not: a write is challenged with the scope it lacks
        r = c.post("/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {at}"})
        assert r.status_code == 401 and 'scope="repository:team/app:pull,push"' in r.headers["WWW-Authenticate"]

        acr.tenant.advance(76 * 60)  # past the access token's 75 minutes, inside the refresh token's 3 h
        assert c.get("/v2/", headers={"Authorization": f"Bearer {at}"}).status_code == 401
        assert forms["POST refresh_token"]().status_code == 200
        acr.tenant.advance(3 * 3600)
        assert forms["POST refresh_token"]().status_code == 401
    assert acr.writes() == 0


# ---- copies through the real engine -------------------------------------------------------------


def test_service_mirrors_image_and_index_into_acr(env: Env, acr: Acr, prefix: str, sleeps: Sleeps) -> None:
    svc = acr_service(env, acr, prefix, sleeps)
    try:
        app = svc.ensure("team/app:v1", "azure", REGION)
        multi = svc.ensure("team/multi:v1", "azure", REGION)
    finally:
        svc.close()
    assert app.target == f"{acr.host}/{prefix}/team/app:v1"
    assert app.digest == env.images.app.digest and multi.digest == env.images.multi.digest

    # One AAD token and one exchange for the service; every repository got its access token
    # from the same refresh token.
    assert acr.cred.calls == 1 and acr.cred.scopes == [(ARM_SCOPE,)]
    assert acr.exchanges() == 1
    assert acr.standin.count("token", status=200, detail="refresh_token") >= 2
    assert acr.standin.count("token", status=401) == 0
    granted = {s for scopes in acr.standin.requested_scopes for s in scopes}
    assert {f"repository:{prefix}/team/app:pull,push", f"repository:{prefix}/team/multi:pull,push"} <= granted

    creds = acr.skopeo_creds()
    for path, want in (("team/app:v1", env.images.app.digest), ("team/multi:v1", env.images.multi.digest)):
        src_digest = inspect_format_digest(f"{env.harbor.host}/{path}", SRC_CREDS)
        dst_digest = inspect_format_digest(f"{acr.host}/{prefix}/{path}", creds)
        assert src_digest == dst_digest == want
    assert inspect_raw(f"{acr.host}/{prefix}/team/multi:v1", creds) == inspect_raw(f"{env.harbor.host}/team/multi:v1", SRC_CREDS)
    for child in (env.images.multi_amd64, env.images.multi_arm64):
        assert inspect_digest(f"{acr.host}/{prefix}/team/multi@{child.digest}", creds) == child.digest


def test_refresh_token_reused_across_repositories_and_mounts(env: Env, acr: Acr, prefix: str, copier: OciCopier) -> None:
    dst = acr.endpoint()
    a = copier.copy(env.source(), src(env, "team/app:v1"), dst, ImageRef(acr.host, f"{prefix}/a", "v1"))
    # What ACR auth cost the first copy (22 requests in all for a 3-layer image): one 401, one
    # exchange, one token; every later request carried the cached access token up-front.
    first = {k: acr.standin.count(k) for k in ("challenge", "exchange", "token")}
    b = copier.copy(env.source(), src(env, "team/app:v1"), dst, ImageRef(acr.host, f"{prefix}/b", "v1"))
    assert a.blobs_copied == 4 and b.blobs_mounted == 4 and b.bytes_uploaded == 0
    # The mounts needed a token for two repositories (push on b, pull on a): one more
    # /oauth2/token call on the same refresh token, no second exchange, no second AAD token.
    assert acr.exchanges() == 1 and acr.cred.calls == 1
    assert (f"repository:{prefix}/a:pull", f"repository:{prefix}/b:pull,push") in acr.standin.requested_scopes
    assert acr.standin.count("proxy", method="POST", path=r"/blobs/uploads/$", status=201) == 4
    # The uploads of the first copy came back through the stand-in: the backend's absolute
    # Location URLs were rewritten, so no request could slip past the auth check.
    assert acr.standin.count("proxy", method="PATCH", status=202) == 4
    assert first == {"challenge": 1, "exchange": 1, "token": 1}
    # With a refresh token in hand, the token for a new repository is fetched up-front: the
    # second copy met no 401 at all.
    assert acr.standin.count("challenge") == first["challenge"], acr.standin.count("challenge")
    assert inspect_digest(f"{acr.host}/{prefix}/b:v1", acr.skopeo_creds()) == env.images.app.digest


def test_expired_access_and_refresh_tokens_are_renewed(env: Env, acr: Acr, prefix: str, sleeps: Sleeps) -> None:
    svc = acr_service(env, acr, prefix, sleeps)
    try:
        svc.ensure("team/app:v1", "azure", REGION)
        assert acr.exchanges() == 1 and acr.cred.calls == 1
        grants = acr.standin.count("token", status=200)

        # The access token dies (75 min), the refresh token lives (3 h): a new access token only.
        acr.tenant.advance(80 * 60)
        svc.ensure("team/app:v2", "azure", REGION)
        assert acr.exchanges() == 1 and acr.cred.calls == 1
        assert acr.standin.count("token", status=200) > grants

        # Both die: /oauth2/token refuses the refresh token, AcrAuth exchanges a new AAD token.
        acr.tenant.advance(4 * 3600)
        res = svc.ensure("team/multi:v1", "azure", REGION)
        assert acr.standin.count("token", status=401) >= 1
        assert acr.exchanges() == 2 and acr.cred.calls == 2
    finally:
        svc.close()
    assert res.digest == env.images.multi.digest
    creds = acr.skopeo_creds()
    assert inspect_digest(f"{acr.host}/{prefix}/team/app:v2", creds) == env.images.app2.digest
    assert inspect_digest(f"{acr.host}/{prefix}/team/multi:v1", creds) == env.images.multi.digest


def test_tokens_expiring_mid_upload(env: Env, acr: Acr, prefix: str, copier: OciCopier, sleeps: Sleeps) -> None:
    # The first streamed PATCH finds every token dead: its body cannot be replayed, so the engine
    # renews the credentials (a re-exchange), aborts that upload and copies the blob again.
    acr.standin.expire_tokens_on("PATCH", r"/blobs/uploads/", refresh=True)
    res = copier.copy(env.source(), src(env, "team/app:v1"), acr.endpoint(), ImageRef(acr.host, f"{prefix}/app", "v1"))
    assert res.digest == env.images.app.digest and res.blobs_copied == 4
    assert acr.standin.count("challenge", method="PATCH") >= 1
    assert acr.exchanges() >= 2 and sleeps.calls  # renewed, then the blob was retried
    assert inspect_digest(f"{acr.host}/{prefix}/app:v1", acr.skopeo_creds()) == env.images.app.digest


@pytest.mark.parametrize("which", ["foreign-tenant", "expired"])
def test_refused_aad_token_is_an_auth_error_and_writes_nothing(
    env: Env, acr: Acr, prefix: str, sleeps: Sleeps, which: str
) -> None:
    cred = FakeTokenCredential(FakeAadTenant()) if which == "foreign-tenant" else FakeTokenCredential(acr.tenant, ttl_s=-60)
    svc = acr_service(env, acr, prefix, sleeps, cred=cred)
    try:
        with pytest.raises(RegistryAuthError) as e:
            svc.ensure("team/app:v1", "azure", REGION)
    finally:
        svc.close()
    assert isinstance(e.value, MirrorError) and not isinstance(e.value, TransientMirrorError)  # an admin must act
    assert f"ACR {acr.host} /oauth2/exchange answered 401" in str(e.value)
    assert acr.standin.count("exchange", status=401) == 1 and acr.standin.count("token") == 0
    assert acr.writes() == 0 and acr.standin.count("proxy") == 0
    assert not [r for r in acr.catalog() if r.startswith(prefix)]
    assert not sleeps.calls  # not retried


def test_no_secret_in_logs_or_errors(env: Env, acr: Acr, prefix: str, sleeps: Sleeps, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, httpx/httpcore included
    svc = acr_service(env, acr, prefix, sleeps)
    try:
        svc.ensure("team/app:v1", "azure", REGION)
        acr.standin.expire_tokens_on("PATCH", r"/blobs/uploads/", refresh=True)  # retry paths log too
        svc.ensure("team/app:v2", "azure", REGION)
        acr.tenant.advance(4 * 3600)
        svc.ensure("team/multi:v1", "azure", REGION)
    finally:
        svc.close()
    bad = FakeTokenCredential(FakeAadTenant())
    failing = acr_service(env, acr, f"{prefix}-x", sleeps, cred=bad)
    try:
        with pytest.raises(RegistryAuthError) as e:
            failing.ensure("team/app:v1", "azure", REGION)
    finally:
        failing.close()

    secrets = [*acr.cred.issued, *bad.issued, *acr.standin.issued_secrets()]
    assert len(secrets) >= 6 and acr.exchanges() >= 2
    assert caplog.records
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    errors = f"{e.value}\n{e.value!r}\n{e.value.__cause__!r}\n{e.value.__context__!r}"
    for s in secrets:
        assert s not in logged
        assert s not in errors
        assert s[:24] not in logged  # not even a prefix of one
