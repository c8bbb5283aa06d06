"""Spot notice on Kubernetes: the node agent reads the notice from a fake metadata service (AWS
and Azure shapes) and reports it on its own Node through the Kubernetes API (a cordon, the taint
``burst.dev/spot-reclaim=<T>:NoSchedule`` and the drain-reason annotation), against the stand-in
API server (tests/support/fake_kube_api.py) with a bearer token; the REAL Kubernetes queue adapter
then shows the node unschedulable with the notice reason, so the controller's spot handling
(policies/spot.plan_notices) checkpoints the pod's job and requeues it before the reclaim."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from burst.agent.__main__ import main as agent_main
from burst.agent.metadata import AwsImds, AzureScheduledEvents
from burst.agent.report import KubeNodeTaint, ReportError
from burst.agent.runner import Agent
from burst.domain import Instance, InstanceState, Market, Purpose
from burst.queues.kubernetes.adapter import KubernetesQueue
from burst.queues.kubernetes.settings import K8sSettings
from policies.spot import (
    SPOT_TAINT_KEY,
    CheckpointStep,
    RequeueStep,
    leaving_view,
    noticed,
    plan_notices,
    utc_iso,
)
from tests.support.fake_kube_api import FakeKube
from tests.support.fake_metadata import FakeMetadata

NOW = 1_800_000_000.0
NODE = "b-0123456789abcdef"
CLOUD_TAINT = {"key": "burst.dev/cloud", "value": "true", "effect": "NoSchedule"}


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    k = FakeKube().start()
    try:
        k.add_node(NODE, 8, labels={"burst.dev/instance-id": NODE}, taints=[CLOUD_TAINT])
        k.add_pod("train", "ml", gpus=8, node=NODE, started=NOW - 3600)
        yield k
    finally:
        k.stop()


@pytest.fixture
def fake() -> Iterator[FakeMetadata]:
    with FakeMetadata() as f:
        yield f


def _instance() -> Instance:
    return Instance(
        id=NODE, cloud="aws", region="us-east-1", zone="use1-az1", instance_type="p4d.24xlarge", market=Market.SPOT,
        purpose=Purpose.OVERFLOW, gpus=8, gpu_model="A100", price_per_hour=12.0, state=InstanceState.JOINED,
        created_at=NOW - 4000, launched_at=NOW - 4000, node_name=NODE,
    )


@pytest.mark.parametrize("cloud", ["aws", "azure"])
def test_agent_taints_its_node_and_the_kubernetes_adapter_shows_the_notice(kube: FakeKube, fake: FakeMetadata, cloud: str) -> None:
    lead = 120.0 if cloud == "aws" else 30.0
    reclaim_at = NOW + lead
    if cloud == "aws":
        fake.aws_action = {"action": "terminate", "time": utc_iso(reclaim_at) + "Z"}
        source = AwsImds(fake.url, timeout_s=2)
    else:
        fake.set_azure_events([{
            "EventId": "e1", "EventType": "Preempt", "ResourceType": "VirtualMachine", "Resources": ["vm1"],
            "EventStatus": "Scheduled", "NotBefore": formatdate(reclaim_at, usegmt=True),
        }])
        source = AzureScheduledEvents(fake.url, timeout_s=2)
    agent = Agent(source, KubeNodeTaint(NODE, host=kube.url, token="sa-token"), clock=lambda: NOW)
    q = KubernetesQueue(K8sSettings(host=kube.url, timeout_s=5))
    try:
        before = q.snapshot()
        assert noticed(before.nodes) == {}
        notice = agent.step()
        assert notice is not None and agent.reported == notice
        node = kube.nodes[NODE]
        assert node["spec"]["unschedulable"] is True
        spot = [t for t in node["spec"]["taints"] if t["key"] == SPOT_TAINT_KEY]
        assert len(spot) == 1 and spot[0]["effect"] == "NoSchedule"
        assert CLOUD_TAINT in node["spec"]["taints"]  # the registration's taints are kept
        assert node["metadata"]["annotations"]["burst.dev/drain-reason"].startswith("burst:spot-reclaim at ")
        assert ("PATCH", f"/api/v1/nodes/{NODE}") in kube.calls

        # The adapter watches nodes: the change reaches its view within moments (a later tick).
        deadline = time.monotonic() + 10
        while True:
            snap = q.snapshot()
            (n,) = [n for n in snap.nodes if n.name == NODE]
            if not n.schedulable or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not n.schedulable
        assert noticed(snap.nodes) == {NODE: int(notice.reclaim_at)}
        # what the controller does with it (Controller._spot_notices runs this plan)
        inst = _instance()
        plan = plan_notices(NOW - 60, [inst], snap.nodes, snap.running)  # first sight, lead left
        (step,) = plan.steps
        assert isinstance(step, CheckpointStep) and step.job_ids == ("ml/pod/train",)
        assert step.reclaim_at == int(reclaim_at)
        draining = Instance(**{**_fields(inst), "state": InstanceState.DRAINING})  # type: ignore[arg-type]
        later = plan_notices(reclaim_at - 10, [draining], snap.nodes, snap.running)
        assert [type(s) for s in later.steps] == [RequeueStep]
        # overflow does not count the leaving node as capacity
        nodes, live = leaving_view(snap.nodes, (inst,))
        assert NODE not in {x.name for x in nodes} and not live
    finally:
        q.close()


def _fields(inst: Instance) -> dict[str, object]:
    return {f: getattr(inst, f) for f in inst.__dataclass_fields__}


def test_a_second_notice_replaces_the_taint_and_a_conflict_is_retried(kube: FakeKube, fake: FakeMetadata) -> None:
    rep = KubeNodeTaint(NODE, host=kube.url, token="t")
    fake.aws_action = {"action": "terminate", "time": utc_iso(NOW + 120) + "Z"}
    agent = Agent(AwsImds(fake.url, timeout_s=2), rep, clock=lambda: NOW)
    kube.fail_next(1, 409)
    agent.step()
    assert agent.reported is None  # not reported: tried again on the next poll
    agent.step()
    assert agent.reported is not None
    fake.aws_action = {"action": "terminate", "time": utc_iso(NOW + 300) + "Z"}
    agent.step()
    spot = [t for t in kube.nodes[NODE]["spec"]["taints"] if t["key"] == SPOT_TAINT_KEY]
    assert [t["value"] for t in spot] == [utc_iso(NOW + 300).replace(":", "-")]


def test_unknown_node_or_no_cluster_is_a_report_error(kube: FakeKube) -> None:
    from burst.agent.metadata import Notice

    with pytest.raises(ReportError, match="HTTP 404"):
        KubeNodeTaint("no-such-node", host=kube.url, token="t").report(Notice(NOW, "aws:terminate"))


def test_cli_refuses_kubernetes_outside_a_pod(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert agent_main(["--cloud", "aws", "--node", NODE, "--report", "kubernetes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["burst agent: not in a Kubernetes pod: KUBERNETES_SERVICE_HOST is not set (or pass --kube-host)"]
