"""Fixtures: a stand-in Kubernetes API server (tests/support/fake_kube_api.py) and a
KubernetesQueue whose REAL kubernetes client talks to it over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from burst.queues.kubernetes.adapter import KubernetesQueue
from burst.queues.kubernetes.settings import K8sSettings
from tests.support.fake_kube_api import FakeKube

T = TypeVar("T")


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kube-watch")]


@pytest.fixture(autouse=True)
def no_leaked_watchers() -> Iterator[None]:
    """Autouse, so set up first and torn down last: every queue a test made is closed by then,
    and no watcher thread may outlive it."""
    yield
    deadline = time.monotonic() + 10  # polled: generous for a loaded machine, quick when they end
    while watcher_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not watcher_threads(), f"leaked watcher threads: {watcher_threads()}"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    k = FakeKube().start()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture
def settings(kube: FakeKube) -> K8sSettings:
    return K8sSettings(host=kube.url, timeout_s=5)


@pytest.fixture
def make_queue(settings: K8sSettings) -> Iterator[Callable[..., KubernetesQueue]]:
    """``make_queue(**settings_update)``: a queue on the fake, closed at teardown (before the fake
    stops, since this fixture depends on it)."""
    made: list[KubernetesQueue] = []

    def make(**update: Any) -> KubernetesQueue:
        q = KubernetesQueue(K8sSettings.model_validate({**settings.model_dump(), **update}))
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


@pytest.fixture
def queue(make_queue: Callable[..., KubernetesQueue]) -> KubernetesQueue:
    return make_queue()


def eventually(check: Callable[[], T], *, timeout: float = 5.0, what: str = "") -> T:
    """Poll ``check`` until it returns a truthy value (AssertionError counts as not yet)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            v = check()
            if v:
                return v
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or check} ({last})")
        time.sleep(0.002)
