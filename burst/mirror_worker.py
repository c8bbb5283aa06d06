"""Image copies off the tick: a small thread pool in front of a :class:`burst.ports.Mirror`.

A multi-gigabyte CUDA image takes minutes to copy; the controller's tick must not wait for it
(nothing in the tick sleeps or blocks on slow work). The executor *submits* a Mirror action
here and moves on; the instance it launches boots meanwhile (about as long as a copy). The
controller collects finished copies at the start of its next tick: successes mark the image as
present in that region (no more Mirror actions for it); failures cool the copy down in the
backoff table (:func:`burst.ports.mirror_backoff_key`) and are audited, so a broken image does not
block launches forever: instances then pull from Harbor directly.

Thread-safety: ``submit`` and ``collect`` are called from the controller thread only; worker
threads touch nothing but the underlying Mirror (whose Store writes are per-call transactions).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from burst.errors import MirrorError
from burst.ports import Mirror, MirrorKey, MirrorOutcome, MirrorResult

log = logging.getLogger("burst.mirror")


class MirrorWorker:
    """The :class:`burst.ports.AsyncMirror` over any :class:`burst.ports.Mirror`."""

    def __init__(self, mirror: Mirror, *, max_workers: int = 2, copier: Mirror | None = None) -> None:
        self.mirror = mirror
        # what the pool calls for a copy: ``mirror`` itself, or a wrapper of it that meters copies
        # (burst.metrics.MeteredMirror, handed in by the wiring)
        self._copier = copier if copier is not None else mirror
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="burst-mirror")
        self._inflight: dict[MirrorKey, Future[MirrorResult]] = {}
        self._lock = threading.Lock()

    # The Mirror protocol, delegated (the CLI and prewarm use the blocking path).
    def target_for(self, image: str, cloud: str, region: str) -> str:
        return self.mirror.target_for(image, cloud, region)

    def ensure(self, image: str, cloud: str, region: str) -> MirrorResult:
        return self.mirror.ensure(image, cloud, region)

    def submit(self, image: str, cloud: str, region: str) -> bool:
        """Queue a copy. False when the same copy is already running (idempotent)."""
        key = (image, cloud, region)
        with self._lock:
            if key in self._inflight:
                return False
            self._inflight[key] = self._pool.submit(self._copier.ensure, image, cloud, region)
        log.info("mirroring %s to %s/%s", image, cloud, region)
        return True

    def in_flight(self) -> int:
        """Copies submitted and not yet collected (running or finished)."""
        with self._lock:
            return len(self._inflight)

    def running(self) -> int:
        """Copies still running."""
        with self._lock:
            return sum(1 for f in self._inflight.values() if not f.done())

    def collect(self) -> list[MirrorOutcome]:
        """Finished copies since the last call (successes and failures)."""
        out: list[MirrorOutcome] = []
        with self._lock:
            done = [(k, f) for k, f in self._inflight.items() if f.done()]
            for k, _ in done:
                del self._inflight[k]
        for key, fut in done:
            try:
                out.append(MirrorOutcome(key, fut.result()))
            except MirrorError as e:
                out.append(MirrorOutcome(key, None, f"{type(e).__name__}: {e}"))
            except Exception as e:  # noqa: BLE001 - a worker bug must not kill the controller
                log.exception("mirror worker crashed on %s", key)
                out.append(MirrorOutcome(key, None, f"internal error: {type(e).__name__}"))
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
