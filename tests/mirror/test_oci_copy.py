"""The copy engine against two real docker-registry servers (see conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from burst.errors import DigestMismatch, MirrorError
from providers.oci import (
    ImageRef,
    OciCopier,
    Progress,
    RegistryAuthError,
    RetryPolicy,
    body_chunks,
    parse_reference,
)
from providers.registry_auth import ChallengeAuth, Credentials
from tests.mirror.conftest import HARBOR_SECRET, HARBOR_USER, TARGET_PASSWORD, TARGET_USER, Env, Sleeps
from tests.support.registry import inspect_digest, inspect_format_digest, inspect_raw, pull_all

SRC_CREDS = (HARBOR_USER, HARBOR_SECRET)
DST_CREDS = (TARGET_USER, TARGET_PASSWORD)

pytestmark = pytest.mark.registry


def src_ref(env: Env, path: str) -> ImageRef:
    return parse_reference(f"{env.harbor_proxy.host}/{path}")


def dst_ref(env: Env, repo: str, tag: str = "v1") -> ImageRef:
    return ImageRef(env.target_proxy.host, repo, tag)


def test_single_manifest_copy_is_digest_identical(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    seen: list[Progress] = []
    res = copier.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo), progress=seen.append)

    src_digest = inspect_format_digest(f"{env.harbor.host}/team/app:v1", SRC_CREDS)
    dst_digest = inspect_format_digest(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS)
    assert src_digest == dst_digest == res.digest == env.images.app.digest
    assert inspect_digest(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS) == res.digest
    assert res.blobs_copied == 4 and res.blobs_skipped == 0 and res.blobs_mounted == 0  # 3 layers + config
    assert res.bytes_uploaded > 600_000
    assert seen and seen[-1].layers_done == seen[-1].layers_total == 4
    assert seen[-1].bytes_done == seen[-1].bytes_total
    # Blobs went up as POST + streamed PATCH + closing PUT ?digest= (verified before commit).
    assert env.target_proxy.blob_uploads() == 4
    assert env.target_proxy.count("PATCH", r"/blobs/uploads/") == 4


def test_index_copy_keeps_index_digest(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    res = copier.copy(env.source(), src_ref(env, "team/multi:v1"), env.dest(), dst_ref(env, fresh_repo))
    src_raw = inspect_raw(f"{env.harbor.host}/team/multi:v1", SRC_CREDS)
    dst_raw = inspect_raw(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS)
    assert src_raw == dst_raw
    assert res.digest == res.source_digest == env.images.multi.digest
    assert inspect_format_digest(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS) == env.images.multi.digest
    for child in (env.images.multi_amd64, env.images.multi_arm64):
        assert inspect_digest(f"{env.target.host}/{fresh_repo}@{child.digest}", DST_CREDS) == child.digest
    # children first, then the index
    puts = [s.path for s in env.target_proxy.seen if s.method == "PUT" and "/manifests/" in s.path]
    assert puts[-1].endswith("/manifests/v1") and len(puts) == 3
    assert res.blobs_copied == 6 and res.manifests_pushed == 3


def test_platform_subset_builds_new_index_and_is_pullable(
    env: Env, copier: OciCopier, fresh_repo: str, tmp_path: Path
) -> None:
    res = copier.copy(
        env.source(), src_ref(env, "team/multi:v1"), env.dest(), dst_ref(env, fresh_repo), platforms=["linux/arm64"]
    )
    assert res.source_digest == env.images.multi.digest
    assert res.digest != res.source_digest  # a new index: documented
    raw = inspect_raw(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS)
    assert inspect_digest(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS) == res.digest
    doc = json.loads(raw)
    assert [m["digest"] for m in doc["manifests"]] == [env.images.multi_arm64.digest]
    assert res.blobs_copied == 3  # arm64 config + 2 layers only
    pull_all(f"{env.target.host}/{fresh_repo}:v1", tmp_path / "pulled", DST_CREDS)
    index = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == res.digest


def test_unknown_platform_is_an_error(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    with pytest.raises(MirrorError, match="no platform"):
        copier.copy(env.source(), src_ref(env, "team/multi:v1"), env.dest(), dst_ref(env, fresh_repo), platforms=["linux/s390x"])


def test_second_image_uploads_only_new_blobs(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    copier.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo, "v1"))
    env.target_proxy.reset()
    env.harbor_proxy.reset()
    res = copier.copy(env.source(), src_ref(env, "team/app:v2"), env.dest(), dst_ref(env, fresh_repo, "v2"))
    # The new layer and the new config travel; the two shared layers are HEADed and skipped.
    assert env.target_proxy.blob_uploads() == 2
    assert res.blobs_copied == 2 and res.blobs_skipped == 2
    uploaded = {s.query for s in env.target_proxy.seen if s.method == "PUT" and "digest=" in s.query}
    assert any(env.images.app2_new_layer.split(":")[1] in q for q in uploaded)
    assert env.harbor_proxy.count("GET", r"/blobs/sha256:") == 2  # only the new blobs were read
    assert inspect_digest(f"{env.target.host}/{fresh_repo}:v2", DST_CREDS) == env.images.app2.digest


def test_repeat_copy_costs_only_heads(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    copier.copy(env.source(), src_ref(env, "team/multi:v1"), env.dest(), dst_ref(env, fresh_repo))
    env.target_proxy.reset()
    res = copier.copy(env.source(), src_ref(env, "team/multi:v1"), env.dest(), dst_ref(env, fresh_repo))
    assert res.bytes_uploaded == 0 and res.blobs_copied == 0
    assert {s.method for s in env.target_proxy.seen} == {"HEAD"}


def test_cross_repository_mount(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    copier.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo + "-a"))
    env.target_proxy.reset()
    res = copier.copy(env.source(), src_ref(env, "team/app:v2"), env.dest(), dst_ref(env, fresh_repo + "-b"))
    assert res.blobs_mounted == 2 and res.blobs_copied == 2
    mounts = env.target_proxy.count("POST", r"/blobs/uploads/", query="mount=", status=201)
    assert mounts == 2
    assert env.target_proxy.blob_uploads() == 2
    assert inspect_digest(f"{env.target.host}/{fresh_repo}-b:v1", DST_CREDS) == env.images.app2.digest


def test_429_retry_after_is_honoured(env: Env, copier: OciCopier, sleeps: Sleeps, fresh_repo: str) -> None:
    env.target_proxy.add_fault("HEAD", r"/blobs/sha256:", status=429, headers={"Retry-After": "7"})
    env.target_proxy.add_fault("PUT", r"/manifests/v1$", status=429, headers={"Retry-After": "3600"})
    res = copier.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    assert 7.0 in sleeps.calls
    assert 30.0 in sleeps.calls  # Retry-After 3600 capped at max_retry_after_s
    assert env.target_proxy.count("HEAD", r"/blobs/", status=429) == 1
    assert inspect_digest(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS) == res.digest


def test_5xx_mid_blob_retries_the_blob(env: Env, copier: OciCopier, sleeps: Sleeps, fresh_repo: str) -> None:
    env.target_proxy.add_fault("PATCH", r"/blobs/uploads/", status=503, times=2)
    env.harbor_proxy.add_fault("GET", r"/blobs/sha256:", status=502)
    res = copier.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    assert len(sleeps.calls) == 3 and all(0 < s <= 30 for s in sleeps.calls)
    assert inspect_digest(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS) == res.digest


def test_gives_up_after_attempts(env: Env, sleeps: Sleeps, fresh_repo: str) -> None:
    env.target_proxy.add_fault("HEAD", r"/manifests/", status=503, times=100)
    with OciCopier(retry=RetryPolicy(attempts=3, sleep=sleeps)) as c:
        with pytest.raises(MirrorError, match="503"):
            c.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    assert len(sleeps.calls) == 2


def test_corrupted_blob_raises_and_commits_nothing(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    bad = env.images.app_layers[0]
    env.harbor_proxy.add_fault("GET", rf"/blobs/{bad}$", corrupt=True)
    with pytest.raises(DigestMismatch):
        copier.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    dest = env.dest(via_proxy=False)
    client = copier.client(dest)
    assert client.head_manifest(fresh_repo, "v1", (f"repository:{fresh_repo}:pull",)) is None
    assert client.head_manifest(fresh_repo, env.images.app.digest, (f"repository:{fresh_repo}:pull",)) is None
    assert not client.blob_exists(fresh_repo, bad)
    # the closing PUT ?digest= for the bad blob never happened; its session was deleted
    puts = [s for s in env.target_proxy.seen if s.method == "PUT" and bad.split(":")[1] in s.query]
    assert puts == []
    assert env.target_proxy.count("DELETE", r"/blobs/uploads/") >= 1


def test_expired_token_is_refreshed(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    # Tokens valid for ~3 s at the registry (60 s leeway minus 57), announced as valid 300 s,
    # so the client keeps using a cached token after the registry stopped accepting it.
    env.token.ttl_s = -57
    auth = ChallengeAuth(Credentials(HARBOR_USER, HARBOR_SECRET))
    src = env.source()
    src = type(src)(src.host, auth, insecure=True)
    copier.resolve(src, src_ref(env, "team/app:v1"))
    fetched = auth.tokens_fetched
    time.sleep(3.5)
    env.harbor_proxy.reset()
    res = copier.copy(src, src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    assert auth.tokens_fetched > fetched
    assert env.harbor_proxy.count("GET", r"/manifests/v1$", status=401) == 1
    assert env.harbor_proxy.count("GET", r"/manifests/v1$", status=200) == 1
    assert res.digest == env.images.app.digest


def test_bad_credentials_raise_auth_error(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    src = type(env.source())(env.harbor_proxy.host, ChallengeAuth(Credentials(HARBOR_USER, "wrong")), insecure=True)
    with pytest.raises(RegistryAuthError):
        copier.copy(src, src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    dst = type(env.dest())(env.target_proxy.host, ChallengeAuth(Credentials(TARGET_USER, "wrong")), insecure=True)
    with pytest.raises(RegistryAuthError):
        copier.copy(env.source(), src_ref(env, "team/app:v1"), dst, dst_ref(env, fresh_repo))


def test_missing_image(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    from providers.oci import ManifestNotFound

    with pytest.raises(ManifestNotFound):
        copier.copy(env.source(), src_ref(env, "team/app:nope"), env.dest(), dst_ref(env, fresh_repo))


def test_chunked_patch_upload(env: Env, sleeps: Sleeps, fresh_repo: str) -> None:
    with OciCopier(chunk_threshold=100_000, chunk_size=64 * 1024, retry=RetryPolicy(sleep=sleeps)) as c:
        res = c.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    assert env.target_proxy.count("PATCH", r"/blobs/uploads/") > 4
    assert max(s.sent for s in env.target_proxy.seen if s.method == "PATCH") <= 64 * 1024
    assert inspect_digest(f"{env.target.host}/{fresh_repo}:v1", DST_CREDS) == res.digest


def test_copy_by_digest(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    d = env.images.app.digest
    res = copier.copy(env.source(), src_ref(env, f"team/app@{d}"), env.dest(), ImageRef(env.target_proxy.host, fresh_repo, None, d))
    assert res.digest == d
    assert inspect_digest(f"{env.target.host}/{fresh_repo}@{d}", DST_CREDS) == d


def test_secrets_never_logged(env: Env, copier: OciCopier, fresh_repo: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.target_proxy.add_fault("HEAD", r"/blobs/sha256:", status=429, headers={"Retry-After": "1"})
    copier.copy(env.source(), src_ref(env, "team/multi:v1"), env.dest(), dst_ref(env, fresh_repo))
    with pytest.raises(RegistryAuthError) as exc:
        bad = type(env.dest())(env.target_proxy.host, ChallengeAuth(Credentials(TARGET_USER, TARGET_PASSWORD + "x")), insecure=True)
        copier.copy(env.source(), src_ref(env, "team/app:v1"), bad, dst_ref(env, fresh_repo + "-x"))
    text = caplog.text + str(exc.value)
    assert caplog.records  # something was logged
    for secret in (HARBOR_SECRET, TARGET_PASSWORD):
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode()[:12] not in text
    assert base64.b64encode(f"{TARGET_USER}:{TARGET_PASSWORD}".encode()).decode() not in text
    assert TARGET_PASSWORD not in repr(Credentials(TARGET_USER, TARGET_PASSWORD))


# ---- reading blob bodies straight off the connection (providers.oci.body_chunks) --------------


class _SpyStream:
    """Wraps a response's network stream and counts what was read through it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.reads = 0
        self.bytes = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = self.inner.read(max_bytes, timeout)  # type: ignore[attr-defined]
        self.reads += 1
        self.bytes += len(data)
        return data


def _get_blob(env: Env, copier: OciCopier, digest: str) -> httpx.Response:
    sc = copier.client(env.source())
    resp = sc._send("GET", f"/v2/team/app/blobs/{digest}", ("repository:team/app:pull",), stream=True, follow_redirects=True)
    assert resp.status_code == 200
    return resp


@pytest.mark.parametrize("read_size", [4096, 65536, 1 << 20])
def test_body_chunks_reads_past_httpx_and_gets_every_byte(env: Env, copier: OciCopier, read_size: int) -> None:
    digest = env.images.app_layers[0]  # 300 kB
    resp = _get_blob(env, copier, digest)
    spy = _SpyStream(resp.extensions["network_stream"])
    resp.extensions["network_stream"] = spy
    try:
        chunks = list(body_chunks(resp, read_size, 30.0))
    finally:
        resp.close()
    data = b"".join(chunks)
    assert len(data) == int(resp.headers["Content-Length"])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    assert all(len(c) <= read_size for c in chunks[1:])
    if read_size < len(data):
        assert spy.reads >= 1 and spy.bytes == len(data) - len(chunks[0])  # the direct path
    else:
        assert spy.reads == 0  # small bodies go through httpx


def test_body_chunks_leaves_no_half_read_connection_in_the_pool(env: Env, copier: OciCopier) -> None:
    for digest in env.images.app_layers:  # the same keep-alive pool, one blob after another
        resp = _get_blob(env, copier, digest)
        try:
            data = b"".join(body_chunks(resp, 8192, 30.0))
        finally:
            resp.close()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    # and ordinary requests on the same client still work
    assert copier.client(env.source()).blob_exists("team/app", env.images.app_layers[0])


def _short_body_server(announced: int, sent: int) -> tuple[str, threading.Thread, socket.socket]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(4096)
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\n\r\n".encode() + b"x" * sent)
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return f"127.0.0.1:{srv.getsockname()[1]}", t, srv


def test_body_chunks_connection_closed_early_is_retryable_not_a_short_blob() -> None:
    host, t, _ = _short_body_server(announced=200_000, sent=120_000)
    with httpx.Client(base_url=f"http://{host}") as client:
        with client.stream("GET", "/blob") as resp:
            got: list[bytes] = []
            with pytest.raises(httpx.RemoteProtocolError, match="unread"):
                for chunk in body_chunks(resp, 16384, 5.0):
                    got.append(chunk)
    t.join(5)
    assert sum(map(len, got)) == 120_000


def test_corrupted_blob_via_direct_read_commits_nothing(env: Env, copier: OciCopier, fresh_repo: str) -> None:
    """A byte flipped near the end, in the part read off the connection directly."""
    bad = env.images.app_layers[1]
    env.harbor_proxy.add_fault("GET", rf"/blobs/{bad}$", corrupt=True, corrupt_at=-10)
    with pytest.raises(DigestMismatch):
        copier.copy(env.source(), src_ref(env, "team/app:v1"), env.dest(), dst_ref(env, fresh_repo))
    client = copier.client(env.dest(via_proxy=False))
    assert not client.blob_exists(fresh_repo, bad)
    assert client.head_manifest(fresh_repo, "v1", (f"repository:{fresh_repo}:pull",)) is None
