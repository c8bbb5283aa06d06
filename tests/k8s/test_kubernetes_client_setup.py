"""A Kubernetes client that cannot be set up (no kubeconfig, no service account outside a pod, an
unknown context) is :class:`QueueUnavailable` naming what is missing, not the SDK's
``ConfigException`` traceback; nothing is cached, so a later snapshot connects once it can."""

from __future__ import annotations

from pathlib import Path

import pytest

from burst.errors import QueueUnavailable
from burst.queues.kubernetes.adapter import KubernetesQueue
from burst.queues.kubernetes.settings import K8sSettings
from tests.support.fake_kube_api import FakeKube


def _kubeconfig(server: str, context: str = "site") -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: not-a-real-token}}]\n"
        f"contexts: [{{name: {context}, context: {{cluster: c, user: u}}}}]\n"
        f"current-context: {context}\n"
    )


def test_missing_kubeconfig_is_unavailable_then_connects_when_it_appears(tmp_path: Path, kube: FakeKube) -> None:
    kube.add_node("gpu01", 8)
    path = tmp_path / "kubeconfig"
    q = KubernetesQueue(K8sSettings(kubeconfig=path, watch=False))
    try:
        with pytest.raises(QueueUnavailable) as e:
            q.snapshot()
        assert f"kubeconfig {path}" in str(e.value) and "\n" not in str(e.value)
        path.write_text(_kubeconfig(kube.url), encoding="utf-8")
        snap = q.snapshot()  # not cached: the next tick connects
        assert [n.name for n in snap.nodes] == ["gpu01"]
    finally:
        q.close()


def test_unknown_context_names_it(tmp_path: Path, kube: FakeKube) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(_kubeconfig(kube.url), encoding="utf-8")
    q = KubernetesQueue(K8sSettings(kubeconfig=path, context="nope", watch=False))
    with pytest.raises(QueueUnavailable, match="context nope"):
        q.snapshot()
    q.close()


def test_in_cluster_outside_a_pod_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    q = KubernetesQueue(K8sSettings(in_cluster=True, watch=False))
    with pytest.raises(QueueUnavailable, match="in-cluster service account"):
        q.snapshot()
    q.close()


def test_missing_token_file_is_unavailable(tmp_path: Path, kube: FakeKube) -> None:
    q = KubernetesQueue(K8sSettings(host=kube.url, token_file=tmp_path / "token", watch=False))
    with pytest.raises(QueueUnavailable, match="token"):
        q.snapshot()
    q.close()
