"""One contract suite for every :class:`burst.ports.Mirror` implementation, and for the
asynchronous submit/collect surface the executor uses (:class:`MirrorWorker`) over each.

Backends:

* ``registry``: :class:`MirrorService` over two real ``docker-registry`` servers on 127.0.0.1:
  a Harbor stand-in with token auth (tests/support/registry.py's token server) and a cloud
  registry stand-in with basic auth, each behind a counting proxy that logs every request. Test
  images are OCI layouts pushed with skopeo; what reached the target is checked with
  ``skopeo inspect`` (an independent client).
* ``sim``: :class:`SimMirror`, the simulator's in-memory registry pair (burst/sim/mirror.py).

Each backend has one configured target region that works and one whose registry does not
answer, and can push content under a tag at the source (to move a tag between two images).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The implementations are imported here and nowhere else in this file (fix these lines when
# modules move): providers.mirror_service, burst.mirror_worker, burst.sim.mirror, burst.store.memory.
from burst.errors import MirrorError, TransientMirrorError
from burst.mirror_worker import MirrorWorker
from burst.ports import Mirror, MirrorOutcome, MirrorResult
from burst.sim.mirror import SimMirror, SimRegistry
from burst.store.memory import MemoryStore
from providers.mirror_service import MirrorService, MirrorSettings
from tests.support.registry import (
    CountingProxy,
    LayoutWriter,
    RegistryServer,
    TokenServer,
    free_port,
    inspect_format_digest,
    push_layout,
    random_layer,
    stop_all,
    tools_available,
)

CLOUD, REGION, DOWN_REGION = "aws", "us-test-1", "us-down-1"
HARBOR_USER, HARBOR_SECRET = "robot$burst-contract", "harbor-contract-s3cr3t"
TARGET_USER, TARGET_PASSWORD = "pusher", "target-contract-pa55"
IMAGE = "team/app:v1"


@dataclass
class MirrorBackend:
    name: str
    mirror: Mirror
    image: str  # at the source
    digest: str  # its manifest digest at the source
    push: Callable[[str, str], str]  # (image, "v1" | "v2") -> digest: put that content under the tag
    digest_at_target: Callable[[str], str | None]  # a target reference -> its digest, or None
    requests: Callable[[], list[tuple[str, str]]]  # (method, path) at both registries since reset
    reset_requests: Callable[[], None]


# ---- registry: MirrorService over real registries -------------------------------------------


@dataclass
class Registries:
    harbor: RegistryServer
    harbor_proxy: CountingProxy
    target: RegistryServer
    target_proxy: CountingProxy
    layout: Path
    digests: dict[str, str]  # "v1" / "v2" -> manifest digest of that layout image


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    if not tools_available():
        pytest.skip("docker-registry/skopeo/htpasswd not installed")
    root = tmp_path_factory.mktemp("contract-registries")
    started: list[object] = []
    try:
        token = TokenServer(root / "token", {HARBOR_USER: HARBOR_SECRET}).start()
        started.append(token)
        harbor = RegistryServer(root / "harbor", auth=("token", token), name="harbor").start()
        started.append(harbor)
        target = RegistryServer(root / "target", auth=("basic", {TARGET_USER: TARGET_PASSWORD}),
                                name="target").start()
        started.append(target)
        harbor_proxy = CountingProxy(harbor.host).start()
        started.append(harbor_proxy)
        target_proxy = CountingProxy(target.host).start()
        started.append(target_proxy)
        lw = LayoutWriter(root / "layout")
        media = "application/vnd.oci.image.layer.v1.tar+gzip"
        shared = [lw.blob(random_layer(s), media) for s in (200_000, 100_000)]
        v1 = lw.image([*shared, lw.blob(random_layer(80_000), media)])
        lw.tag(v1, "v1")
        v2 = lw.image([*shared, lw.blob(random_layer(60_000), media)])
        lw.tag(v2, "v2")
        push_layout(lw.root, "v1", f"{harbor.host}/{IMAGE}", (HARBOR_USER, HARBOR_SECRET))
        yield Registries(harbor, harbor_proxy, target, target_proxy, lw.root, {"v1": v1.digest, "v2": v2.digest})
    finally:
        stop_all(reversed(started))


def _registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MirrorBackend]:
    r: Registries = request.getfixturevalue("registries")
    secret = tmp_path / "target-password"
    secret.write_text(TARGET_PASSWORD + "\n")
    environ = {
        "BURST_REGISTRY_HARBOR_USERNAME": HARBOR_USER,
        "BURST_REGISTRY_HARBOR_PASSWORD": HARBOR_SECRET,
        "BURST_REGISTRY_TARGET_USERNAME": TARGET_USER,
        "BURST_REGISTRY_TARGET_PASSWORD_FILE": str(secret),
    }
    target = {"insecure": True, "auth": {"method": "basic", "credentials": "target"},
              # a prefix of its own per test: the registries live for the module
              "repository_prefix": f"c{uuid.uuid4().hex[:10]}"}
    settings = MirrorSettings.model_validate({
        "source": {"registry": r.harbor_proxy.host, "insecure": True,
                   "auth": {"method": "basic", "credentials": "harbor"}},
        "targets": {
            f"{CLOUD}:{REGION}": {"registry": r.target_proxy.host, **target},
            f"{CLOUD}:{DOWN_REGION}": {"registry": f"127.0.0.1:{free_port()}", **target},  # nobody listens
        },
        "retry_attempts": 2,
    })
    service = MirrorService(settings, MemoryStore(), environ=environ, sleep=lambda s: None)

    def push(image: str, which: str) -> str:
        push_layout(r.layout, which, f"{r.harbor.host}/{image}", (HARBOR_USER, HARBOR_SECRET))
        return r.digests[which]

    def digest_at_target(ref: str) -> str | None:
        direct = ref.replace(r.target_proxy.host, r.target.host, 1)
        try:
            return inspect_format_digest(direct, (TARGET_USER, TARGET_PASSWORD))
        except RuntimeError as e:
            if "manifest unknown" in str(e) or "not found" in str(e).lower():
                return None
            raise

    def requests() -> list[tuple[str, str]]:
        return [(s.method, s.path) for p in (r.harbor_proxy, r.target_proxy) for s in list(p.seen)]

    def reset() -> None:
        r.harbor_proxy.reset()
        r.target_proxy.reset()

    reset()
    try:
        yield MirrorBackend("registry", service, IMAGE, r.digests["v1"], push, digest_at_target, requests, reset)
    finally:
        service.close()


# ---- sim: the in-memory registry pair -------------------------------------------------------

SIM_CONTENT = {
    "v1": {"sha256:" + "1" * 64: 200_000, "sha256:" + "2" * 64: 100_000, "sha256:" + "3" * 64: 80_000},
    "v2": {"sha256:" + "1" * 64: 200_000, "sha256:" + "2" * 64: 100_000, "sha256:" + "4" * 64: 60_000},
}


def _sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MirrorBackend]:
    source = SimRegistry("harbor.sim.example")
    target = SimRegistry("registry.us-test-1.sim.example")
    down = SimRegistry("registry.us-down-1.sim.example")
    down.down = True
    mirror = SimMirror(source, {f"{CLOUD}:{REGION}": target, f"{CLOUD}:{DOWN_REGION}": down})

    def push(image: str, which: str) -> str:
        repo, tag = image.rsplit(":", 1)
        return source.push(repo, tag, SIM_CONTENT[which])

    digest = push(IMAGE, "v1")

    def digest_at_target(ref: str) -> str | None:
        assert ref.startswith(target.host + "/")
        return target.digest_of(ref.removeprefix(target.host + "/"))

    def reset() -> None:
        source.requests.clear()
        target.requests.clear()

    yield MirrorBackend("sim", mirror, IMAGE, digest, push, digest_at_target,
                        lambda: [*source.requests, *target.requests], reset)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[MirrorBackend]]] = {
    "registry": _registry,
    "sim": _sim,
}


@pytest.fixture(params=list(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MirrorBackend]:
    yield from FACTORIES[request.param](request, tmp_path)


@pytest.fixture
def worker(backend: MirrorBackend) -> Iterator[MirrorWorker]:
    w = MirrorWorker(backend.mirror, max_workers=2)
    yield w
    w.close()


# ---- Mirror ---------------------------------------------------------------------------------


def test_is_a_mirror(backend: MirrorBackend) -> None:
    assert isinstance(backend.mirror, Mirror)


def test_target_for_is_pure_naming(backend: MirrorBackend) -> None:
    m = backend.mirror
    target = m.target_for(backend.image, CLOUD, REGION)
    assert target == m.target_for(backend.image, CLOUD, REGION)
    assert target.endswith("/team/app:v1")  # repository path and tag kept
    assert m.target_for(backend.image, CLOUD, DOWN_REGION) != target  # per region
    assert m.target_for("team/app:v2", CLOUD, REGION) == target.removesuffix(":v1") + ":v2"
    digest = "sha256:" + "a" * 64
    assert m.target_for(f"team/app@{digest}", CLOUD, REGION) == target.removesuffix(":v1") + "@" + digest
    assert backend.requests() == []  # naming asks no registry
    assert backend.digest_at_target(target) is None  # and copies nothing


def test_target_for_an_unconfigured_region_or_a_bad_reference_is_a_mirror_error(backend: MirrorBackend) -> None:
    with pytest.raises(MirrorError):
        backend.mirror.target_for(backend.image, "azure", "nowhere")
    with pytest.raises(MirrorError):
        backend.mirror.target_for("Team/App::v1", CLOUD, REGION)


def test_ensure_makes_the_image_present_with_the_same_digest(backend: MirrorBackend) -> None:
    target = backend.mirror.target_for(backend.image, CLOUD, REGION)
    assert backend.digest_at_target(target) is None
    res = backend.mirror.ensure(backend.image, CLOUD, REGION)
    assert isinstance(res, MirrorResult)
    assert (res.source, res.target, res.digest) == (backend.image, target, backend.digest)
    assert res.blobs_copied + res.blobs_skipped >= 1
    assert backend.digest_at_target(target) == backend.digest  # checked by an independent reader


def test_ensure_is_idempotent_and_a_present_image_costs_only_head_calls(backend: MirrorBackend) -> None:
    first = backend.mirror.ensure(backend.image, CLOUD, REGION)
    backend.reset_requests()
    again = backend.mirror.ensure(backend.image, CLOUD, REGION)
    assert (again.target, again.digest) == (first.target, first.digest)
    assert (again.bytes_uploaded, again.blobs_copied) == (0, 0)
    seen = backend.requests()
    assert seen, "a present image is still checked at the source"
    assert {method for method, _ in seen} == {"HEAD"}, seen
    assert backend.digest_at_target(first.target) == backend.digest


def test_a_tag_moved_at_the_source_is_copied_again(backend: MirrorBackend) -> None:
    image = f"team/moving:{uuid.uuid4().hex[:8]}"
    old = backend.push(image, "v1")
    first = backend.mirror.ensure(image, CLOUD, REGION)
    assert first.digest == old
    new = backend.push(image, "v2")
    assert new != old
    moved = backend.mirror.ensure(image, CLOUD, REGION)
    assert moved.digest == new and moved.target == first.target
    assert moved.blobs_copied + moved.blobs_skipped >= 1
    assert backend.digest_at_target(moved.target) == new


def test_failures_are_mirror_errors_and_leave_nothing_at_the_target(backend: MirrorBackend) -> None:
    missing = "team/never-pushed:v1"
    with pytest.raises(MirrorError):
        backend.mirror.ensure(missing, CLOUD, REGION)
    assert backend.digest_at_target(backend.mirror.target_for(missing, CLOUD, REGION)) is None
    with pytest.raises(MirrorError):
        backend.mirror.ensure(backend.image, "azure", "nowhere")
    t0 = time.monotonic()
    with pytest.raises(TransientMirrorError):  # the region's registry does not answer: try later
        backend.mirror.ensure(backend.image, CLOUD, DOWN_REGION)
    assert time.monotonic() - t0 < 30


# ---- the asynchronous surface: MirrorWorker over each Mirror ---------------------------------


def collect_until(worker: MirrorWorker, n: int, timeout: float = 60.0) -> list[MirrorOutcome]:
    got: list[MirrorOutcome] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        got += worker.collect()
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(got)} of {n} copies collected after {timeout}s")
        time.sleep(0.02)
    return got


def test_worker_is_a_mirror_that_delegates(backend: MirrorBackend, worker: MirrorWorker) -> None:
    assert isinstance(worker, Mirror)
    assert worker.target_for(backend.image, CLOUD, REGION) == backend.mirror.target_for(backend.image, CLOUD, REGION)
    assert worker.ensure(backend.image, CLOUD, REGION).digest == backend.digest


def test_submit_is_idempotent_while_in_flight_and_collect_hands_over_each_result_once(
    backend: MirrorBackend, worker: MirrorWorker
) -> None:
    assert worker.collect() == []
    assert worker.submit(backend.image, CLOUD, REGION) is True
    assert worker.submit(backend.image, CLOUD, REGION) is False  # same copy already in flight
    assert worker.in_flight() == 1
    (out,) = collect_until(worker, 1)
    assert out.key == (backend.image, CLOUD, REGION) and out.error == ""
    assert out.result is not None and out.result.digest == backend.digest
    assert out.result.target == backend.mirror.target_for(backend.image, CLOUD, REGION)
    assert backend.digest_at_target(out.result.target) == backend.digest
    assert worker.in_flight() == 0 and worker.collect() == []
    assert worker.submit(backend.image, CLOUD, REGION) is True  # collected: may be asked again
    (again,) = collect_until(worker, 1)
    assert again.result is not None and again.result.digest == backend.digest


def test_failed_copies_come_back_as_outcomes_never_as_exceptions(backend: MirrorBackend, worker: MirrorWorker) -> None:
    assert worker.submit("team/never-pushed:v1", CLOUD, REGION)
    assert worker.submit(backend.image, CLOUD, DOWN_REGION)
    assert worker.submit(backend.image, CLOUD, REGION)
    outs = {o.key: o for o in collect_until(worker, 3)}
    missing = outs[("team/never-pushed:v1", CLOUD, REGION)]
    down = outs[(backend.image, CLOUD, DOWN_REGION)]
    for failed in (missing, down):
        assert failed.result is None and failed.error
        kind = failed.error.split(":", 1)[0]
        assert kind in _mirror_error_names(), failed.error  # a typed MirrorError, by name
    assert down.error.split(":", 1)[0] in _mirror_error_names(TransientMirrorError)
    ok = outs[(backend.image, CLOUD, REGION)]
    assert ok.error == "" and ok.result is not None and ok.result.digest == backend.digest


def _mirror_error_names(base: type[MirrorError] = MirrorError) -> set[str]:
    names, todo = set(), [base]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names
