"""Fixtures for the mirror tests: two real registries (token auth as the Harbor stand-in, basic
auth as the cloud-registry stand-in), a token server, counting proxies, and test images pushed
once per session with skopeo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from providers.oci import Endpoint, OciCopier, RetryPolicy
from providers.registry_auth import ChallengeAuth, Credentials, harbor_robot
from tests.support.registry import (
    CountingProxy,
    Descriptor,
    LayoutWriter,
    RegistryServer,
    TokenServer,
    push_layout,
    random_layer,
    stop_all,
    tools_available,
)

HARBOR_USER, HARBOR_SECRET = "robot$burst-mirror", "harbor-robot-s3cr3t-Xq9"
TARGET_USER, TARGET_PASSWORD = "pusher", "target-pa55-Zk7"


@dataclass
class Images:
    """What was pushed to the source (``harbor``) registry."""

    app: Descriptor  # single manifest, 3 layers, tag app:v1
    app_layers: list[str]
    app2: Descriptor  # shares 2 layers with app, 1 new, tag app:v2
    app2_new_layer: str
    multi: Descriptor  # index linux/amd64 + linux/arm64, tag multi:v1
    multi_amd64: Descriptor
    multi_arm64: Descriptor


@dataclass
class Env:
    token: TokenServer
    harbor: RegistryServer
    harbor_proxy: CountingProxy
    target: RegistryServer
    target_proxy: CountingProxy
    images: Images
    root: Path

    def source(self, *, via_proxy: bool = True) -> Endpoint:
        host = self.harbor_proxy.host if via_proxy else self.harbor.host
        return Endpoint(host, ChallengeAuth(harbor_robot("burst-mirror", HARBOR_SECRET)), insecure=True)

    def dest(self, *, via_proxy: bool = True) -> Endpoint:
        host = self.target_proxy.host if via_proxy else self.target.host
        return Endpoint(host, ChallengeAuth(Credentials(TARGET_USER, TARGET_PASSWORD)), insecure=True)


@pytest.fixture(scope="session")
def registry_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if not tools_available():
        pytest.skip("docker-registry/skopeo/htpasswd not installed")
    root = tmp_path_factory.mktemp("registries")
    started: list[object] = []
    try:
        token = TokenServer(root / "token", {HARBOR_USER: HARBOR_SECRET}).start()
        started.append(token)
        harbor = RegistryServer(root / "harbor", auth=("token", token), name="harbor").start()
        started.append(harbor)
        target = RegistryServer(root / "target", auth=("basic", {TARGET_USER: TARGET_PASSWORD}), name="target").start()
        started.append(target)
        harbor_proxy = CountingProxy(harbor.host).start()
        started.append(harbor_proxy)
        target_proxy = CountingProxy(target.host).start()
        started.append(target_proxy)

        lw = LayoutWriter(root / "layout")
        shared = [lw.blob(random_layer(s), "application/vnd.oci.image.layer.v1.tar+gzip") for s in (300_000, 200_000)]
        own = lw.blob(random_layer(150_000), "application/vnd.oci.image.layer.v1.tar+gzip")
        app = lw.image([*shared, own])
        lw.tag(app, "app-v1")
        new = lw.blob(random_layer(120_000), "application/vnd.oci.image.layer.v1.tar+gzip")
        app2 = lw.image([*shared, new])
        lw.tag(app2, "app-v2")
        amd = lw.image([random_layer(100_000), random_layer(80_000)], arch="amd64")
        arm = lw.image([random_layer(90_000), random_layer(70_000)], arch="arm64")
        multi = lw.index([amd, arm])
        lw.tag(multi, "multi-v1")
        creds = (HARBOR_USER, HARBOR_SECRET)
        push_layout(lw.root, "app-v1", f"{harbor.host}/team/app:v1", creds)
        push_layout(lw.root, "app-v2", f"{harbor.host}/team/app:v2", creds)
        push_layout(lw.root, "multi-v1", f"{harbor.host}/team/multi:v1", creds)
        images = Images(app, [d.digest for d in (*shared, own)], app2, new.digest, multi, amd, arm)
        token.reset()
        yield Env(token, harbor, harbor_proxy, target, target_proxy, images, root)
    finally:
        stop_all(reversed(started))


@pytest.fixture
def env(registry_env: Env) -> Iterator[Env]:
    registry_env.harbor_proxy.reset()
    registry_env.target_proxy.reset()
    registry_env.token.reset()
    yield registry_env
    registry_env.token.reset()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, s: float) -> None:
        self.calls.append(s)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def copier(sleeps: Sleeps) -> Iterator[OciCopier]:
    # read_size well under the test layers (70-300 kB), so blob bodies take the direct read
    # from the connection (providers.oci.body_chunks); the config blobs still go through httpx.
    with OciCopier(parallel=4, read_size=16 * 1024, retry=RetryPolicy(sleep=sleeps, max_retry_after_s=30)) as c:
        yield c


@pytest.fixture
def fresh_repo(request: pytest.FixtureRequest) -> str:
    return f"mirror/{request.node.name.lower().replace('_', '-')[:40]}-{os.urandom(3).hex()}"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
