"""Reporting a notice through the scheduler the node joined (see :mod:`burst.agent`)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from burst.agent.metadata import Notice
from policies.spot import SPOT_TAINT_KEY, notice_reason, taint_value


class ReportError(Exception):
    """The scheduler did not take the report; the agent tries again on its next poll."""


class Reporter(Protocol):
    def report(self, notice: Notice) -> None: ...


class SlurmDrain:
    """``scontrol update nodename=<node> state=drain reason="burst:spot-reclaim at <T>"``.
    Draining an already drained node replaces its reason, so a node burst drained for idleness
    still gets the notice. Idempotent."""

    def __init__(
        self, node: str, *, scontrol: Sequence[str] = ("scontrol",), env: Mapping[str, str] | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.node = node
        self.scontrol = tuple(scontrol)
        self.env = dict(env) if env is not None else None
        self.timeout_s = timeout_s

    def report(self, notice: Notice) -> None:
        args = [*self.scontrol, "update", f"nodename={self.node}", "state=drain", f"reason={notice_reason(notice.reclaim_at)}"]
        try:
            cp = subprocess.run(
                args, capture_output=True, text=True, timeout=self.timeout_s,
                env={**os.environ, **self.env} if self.env is not None else None,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ReportError(f"{' '.join(args[:3])}: {e}") from None
        if cp.returncode != 0:
            raise ReportError(f"scontrol update nodename={self.node}: {cp.stderr.strip() or cp.returncode}")


# ---- Kubernetes: taint and cordon the agent's own Node, as AWS Node Termination Handler does ----

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DRAIN_REASON_ANNOTATION = "burst.dev/drain-reason"  # the key the Kubernetes queue adapter reads and writes (not imported: no adapter on the node)


class KubeNodeTaint:
    """Report a notice on the agent's own Node through the Kubernetes API, with the node's
    service account (in-cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``,
    the token and CA under :data:`SA_DIR`): cordon it (``spec.unschedulable``), add the taint
    ``burst.dev/spot-reclaim=<reclaim time>:NoSchedule`` and the annotation
    ``burst.dev/drain-reason: burst:spot-reclaim at <T>Z``. The controller reads the taint through
    the Kubernetes queue adapter (the node shows as unschedulable with that reason).

    Read, then merge-patch with the read ``resourceVersion``: a concurrent change (a conflict,
    409) fails this report, and the agent tries again on its next poll. A taint of an earlier
    notice is replaced. The service account needs ``get`` and ``patch`` on nodes. Stdlib HTTP
    only, so the agent needs no Kubernetes client on the node."""

    def __init__(
        self, node: str, *, host: str | None = None, token: str | None = None, ca_file: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.node = node
        if host is None:
            h, p = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not h:
                raise ReportError("not in a Kubernetes pod: KUBERNETES_SERVICE_HOST is not set (or pass --kube-host)")
            host = f"https://{'[' + h + ']' if ':' in h else h}:{p}"
        self.host = host.rstrip("/")
        self._token = token
        self.ca_file = ca_file if ca_file is not None else (f"{SA_DIR}/ca.crt" if self.host.startswith("https") else None)
        self.timeout_s = timeout_s

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        token = self._token
        if token is None:
            try:
                token = Path(f"{SA_DIR}/token").read_text().strip()  # re-read: kubelet rotates it
            except OSError as e:
                raise ReportError(f"service account token: {e.strerror or e}") from None
        h = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        if content_type:
            h["Content-Type"] = content_type
        return h

    def _call(self, method: str, body: object | None = None) -> dict[str, object]:
        url = f"{self.host}/api/v1/nodes/{urllib.parse.quote(self.node, safe='')}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 (the API server's URL)
            url, data=data, method=method,
            headers=self._headers("application/merge-patch+json" if body is not None else None),
        )
        ctx = ssl.create_default_context(cafile=self.ca_file) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=ctx) as resp:  # noqa: S310
                out = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise ReportError(f"{method} node {self.node}: HTTP {e.code} {e.reason}") from None
        except (OSError, ValueError) as e:
            raise ReportError(f"{method} node {self.node}: {e}") from None
        if not isinstance(out, dict):
            raise ReportError(f"{method} node {self.node}: not a JSON object")
        return out

    def report(self, notice: Notice) -> None:
        node = self._call("GET")
        meta, spec = node.get("metadata"), node.get("spec")
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            raise ReportError(f"GET node {self.node}: no metadata or spec")
        taints = [t for t in spec.get("taints") or [] if isinstance(t, dict) and t.get("key") != SPOT_TAINT_KEY]
        taints.append({"key": SPOT_TAINT_KEY, "value": taint_value(notice.reclaim_at), "effect": "NoSchedule"})
        new_meta: dict[str, object] = {"annotations": {DRAIN_REASON_ANNOTATION: notice_reason(notice.reclaim_at)}}
        if meta.get("resourceVersion") is not None:
            new_meta["resourceVersion"] = meta["resourceVersion"]  # a concurrent change: 409, retried
        self._call("PATCH", {"metadata": new_meta, "spec": {"unschedulable": True, "taints": taints}})
