"""The wiring, and only the wiring, decides which optional capabilities each adapter brings, and
hands them to the controller and the daemon explicitly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from burst.config import BurstConfig
from burst.mirror_worker import MirrorWorker
from burst.store.memory import MemoryStore
from burst.wiring import build_runtime
from providers.mirror_service import MirrorService

MIRROR = {"source": {"registry": "harbor.example.com"}, "targets": {"aws:us-east-1": {"registry": "r.example.com"}}}


def _cfg(tmp_path: Path, **over: Any) -> BurstConfig:
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"pending": [], "running": [], "nodes": []}))
    raw: dict[str, Any] = {"cluster": "wire", "queue": {"kind": "jsonfile", "jsonfile": str(queue)}}
    raw.update(over)
    return BurstConfig.model_validate(raw)


def test_a_queue_without_capabilities_hands_over_none(tmp_path: Path) -> None:
    rt = build_runtime(_cfg(tmp_path), store=MemoryStore())
    c = rt.controller
    assert (c.executor.gang_hold, c.executor.async_mirror, c.executor.mirror) == (None, None, None)
    assert rt.closeables == () and rt.prewarmer is None


def test_kubernetes_brings_its_gang_hold_and_is_closed_with_the_daemon(tmp_path: Path) -> None:
    from burst.queues.kubernetes.adapter import KubernetesQueue

    cfg = _cfg(tmp_path, queue={"kind": "kubernetes", "kubernetes": {"host": "http://127.0.0.1:9"}})
    rt = build_runtime(cfg, store=MemoryStore())
    assert isinstance(rt.queue, KubernetesQueue)
    assert rt.controller.executor.gang_hold is rt.queue and rt.closeables == (rt.queue,)
    rt.queue.close()


def test_a_mirror_runs_off_the_tick_and_prewarms(tmp_path: Path) -> None:
    rt = build_runtime(_cfg(tmp_path, mirror=MIRROR), store=MemoryStore())
    worker = rt.controller.executor.async_mirror
    assert isinstance(worker, MirrorWorker) and rt.controller.executor.mirror is worker
    assert isinstance(rt.prewarmer, MirrorService) and worker.mirror is rt.prewarmer
    worker.close()
