"""Mirroring off the tick: Mirror actions are queued to a worker, outcomes collected next tick.

Uses our own fake Mirror (the Protocol, not an SDK); the real copy engine has its own tests
against real registries in tests/mirror.
"""

from __future__ import annotations

import threading
import time

from burst.errors import TransientMirrorError
from burst.mirror_worker import MirrorWorker
from burst.ports import MirrorResult
from burst.ports import mirror_backoff_key as backoff_key
from burst.sim.trace import TraceJob
from tests.core.world import T0, TICK, World

IMAGE = "harbor.example/ml/train:1.0"


class FakeMirror:
    """Copies 'succeed' when released; can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def target_for(self, image: str, cloud: str, region: str) -> str:
        return f"{cloud}-{region}.mirror/{image.split('/', 1)[1]}"

    def ensure(self, image: str, cloud: str, region: str) -> MirrorResult:
        self.calls.append((image, cloud, region))
        self.release.wait(60)  # a 'slow' copy lasts until released (60 s at most)
        if self.fail:
            raise TransientMirrorError("registry said 503")
        return MirrorResult(image, self.target_for(image, cloud, region), "sha256:" + "ab" * 32, 123, 2, 0)


def _world(mirror: FakeMirror) -> tuple[World, MirrorWorker]:
    w = World(nodes=1)
    worker = MirrorWorker(mirror)
    w.controller.executor.mirror = w.controller.executor.async_mirror = worker
    # fill the only on-prem node, then queue a burstable job with an image
    w.submit("fill", 8, 10_000)
    w.cluster.submit(TraceJob("j1", 0.0, 600.0, 8, nodes=1, per_node=8, image=IMAGE), T0)
    return w, worker


def _wait_idle(worker: MirrorWorker) -> None:
    deadline = time.monotonic() + 30
    while worker.running() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_mirror_is_queued_with_the_launch_and_collected_next_tick() -> None:
    mirror = FakeMirror()
    mirror.release.clear()  # the copy is 'slow': the tick must not wait for it
    w, worker = _world(mirror)
    t0 = time.monotonic()
    res = w.tick(T0 + 120)  # past the 60 s threshold of the test policy
    assert time.monotonic() - t0 < 10.0  # did not wait for the copy (60 s); generous for loaded CI
    kinds = [type(a).__name__ for a in res.plan.actions]
    assert kinds.index("Mirror") < kinds.index("Launch"), kinds
    assert res.executed.launched, "the launch does not wait for the copy"
    assert worker.in_flight() == 1
    # the next tick, copy still running: no second Mirror queued for the same image/region
    res2 = w.tick(T0 + 120 + TICK)
    assert worker.in_flight() == 1 and len(mirror.calls) == 1
    mirror.release.set()
    _wait_idle(worker)
    w.tick(T0 + 120 + 2 * TICK)
    assert (IMAGE, "aws", "us-east-1") in w.controller._mirrored
    assert any(r.action == "mirrored" for r in w.store.audit_rows(kind="mirror", limit=10))
    assert res2.plan is not None


def test_failed_mirror_backs_off_and_never_blocks_the_launch() -> None:
    mirror = FakeMirror(fail=True)
    w, worker = _world(mirror)
    res = w.tick(T0 + 120)
    assert res.executed.launched
    _wait_idle(worker)
    w.tick(T0 + 120 + TICK)
    key = backoff_key(IMAGE, "aws", "us-east-1")
    assert key in w.store.backoffs(w.now())
    assert any(r.action == "failed" for r in w.store.audit_rows(kind="mirror", limit=10))
    assert (IMAGE, "aws", "us-east-1") not in w.controller._mirrored


def test_prewarm_job_mirrors_the_most_used_images_of_the_last_30_days() -> None:
    from burst import scheduling
    from burst.daemon import Daemon

    class PrewarmMirror(FakeMirror):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[dict[str, int]] = []

        def prewarm(self, uses: dict[str, int]) -> list[MirrorResult]:
            self.asked.append(dict(uses))
            return []

    inner = PrewarmMirror()
    w, worker = _world(inner)
    worker.mirror = inner
    w.tick(T0 + 120)  # launches an instance for j1, whose image is IMAGE
    d = Daemon(w.controller, w.clock, w.store, holder="h", prewarmer=inner)
    d.leader = True
    scheduling._DAEMONS["t"] = d
    try:
        scheduling._prewarm_job("t")
    finally:
        scheduling._DAEMONS.pop("t", None)
    assert inner.asked == [{IMAGE: 1}]
    d.leader = False  # a standby never prewarms
    scheduling._DAEMONS["t"] = d
    try:
        scheduling._prewarm_job("t")
    finally:
        scheduling._DAEMONS.pop("t", None)
    assert len(inner.asked) == 1
