"""Fixtures: a stand-in Kubernetes API server (tests/support/fake_kube_api.py) and a
KubernetesQueue whose REAL kubernetes client talks to it over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from burst.queues.kubernetes import K8sSettings, KubernetesQueue
from tests.support.fake_kube_api import FakeKube


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
def queue(settings: K8sSettings) -> KubernetesQueue:
    return KubernetesQueue(settings)
