"""Issue 6, end to end on Kubernetes: the real ``Controller.tick(time.time())`` over
``KubernetesQueue`` (the REAL kubernetes client, over HTTP, against the stand-in API server in
tests/support/fake_kube_api.py), with a simulated cloud and with AwsProvider on moto.

The harness plays only what lives outside burst:

* the booted instance joining the cluster as ``kubeadm join`` would: a Node named and labelled as
  the instance's user data says (AwsProvider: read back from EC2 with ``DescribeInstanceAttribute``
  and parsed from the ``builtin:k8s`` JoinConfiguration; SimProvider: the same name and labels
  the template would give, added from its ``on_ready`` hook), tainted
  ``burst.dev/cloud=true:NoSchedule``;
* kube-scheduler: a pending pod that tolerates the taint is bound to a Ready, uncordoned node
  with free GPUs; other pods are not;
* the kubelet: a bound pod runs, then succeeds after a few seconds.

Asserted at every step in the API server's own objects (node labels, ``spec.unschedulable``,
deletion, the pod's ``spec.nodeName``), in the controller's snapshot, in the store and in the
cloud; the time between steps is printed (run with ``-s``).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from burst.controller import Controller, TickResult
from burst.domain import Drain, InstanceState, Launch, Terminate
from burst.ports import Store
from burst.queues.kubernetes.adapter import KubernetesQueue
from burst.queues.kubernetes.settings import K8sSettings
from burst.sim.clock import WallClock
from burst.sim.cloud import SimInstance, SimProvider
from burst.store.memory import MemoryStore
from burst.store.sql import SqlStore
from policies import PolicyConfig
from policies.model import OverflowConfig, ScaleInConfig
from providers.aws import AwsProvider
from tests.aws.helpers import settings_factory
from tests.e2e.conftest import CLUSTER, REGION, Timeline, aws_offers, tick_until
from tests.support.fake_kube_api import FakeKube, ts
from tests.support.moto_server import MotoServer

POLICY = PolicyConfig(
    overflow=OverflowConfig(wait_threshold_s=0),
    scale_in=ScaleInConfig(idle_timeout_s=1, join_timeout_s=120),
    tick_interval_s=1,
)
OPT_IN = {"burst.dev/allow-cloud": "true"}
CLOUD_TAINT = {"key": "burst.dev/cloud", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": "burst.dev/cloud", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
GPU = "nvidia.com/gpu"
RUN_SECONDS = 2.0


# ---- the world outside burst -------------------------------------------------------------------


def seed_full_cluster(kube: FakeKube) -> None:
    """Two on-prem 8-GPU nodes, both full."""
    for i in (1, 2):
        kube.add_node(f"gpu0{i}", 8)
        kube.add_pod(f"fill{i}", "ml", gpus=8, node=f"gpu0{i}")


def add_gpu_pod(kube: FakeKube, name: str, *, opt_in: bool, gpus: int = 8) -> str:
    """An unschedulable GPU pod (the scheduler judged it: Insufficient nvidia.com/gpu). One that
    opts in also tolerates the cloud taint, as a bursting workload must."""
    pod = kube.add_pod(name, "ml", gpus=gpus, labels=OPT_IN if opt_in else {})
    if opt_in:
        with kube.lock:
            pod["spec"]["tolerations"] = [TOLERATION]
    return f"ml/pod/{name}"


def tolerates(pod: dict[str, Any], taints: list[dict[str, Any]]) -> bool:
    tol = pod["spec"].get("tolerations") or []
    return all(
        any(t.get("key") == x["key"] and t.get("value") == x.get("value") and t.get("effect") == x["effect"]
            for t in tol)
        for x in taints
        if x.get("effect") == "NoSchedule"
    )


@dataclass
class Scheduler:
    """Plays kube-scheduler and the kubelet on the stand-in API server's objects."""

    kube: FakeKube
    tl: Timeline
    bound: dict[str, float] = field(default_factory=dict)  # pod name -> bound at (monotonic)

    def free_gpus(self, node: dict[str, Any]) -> int:
        name = node["metadata"]["name"]
        used = sum(
            int(p["spec"]["containers"][0]["resources"]["limits"].get(GPU, "0"))
            for p in self.kube.pods.values()
            if p["spec"].get("nodeName") == name and p["status"]["phase"] not in ("Succeeded", "Failed")
        )
        return int(node["status"]["allocatable"].get(GPU, "0")) - used

    def step(self) -> None:
        with self.kube.lock:
            for (_, name), pod in list(self.kube.pods.items()):
                if pod["spec"].get("nodeName"):
                    if (
                        name in self.bound
                        and pod["status"]["phase"] == "Running"
                        and time.monotonic() - self.bound[name] >= RUN_SECONDS
                    ):
                        pod["status"]["phase"] = "Succeeded"
                        self.tl.mark(f"kubelet: pod {name} Succeeded")
                    continue
                want = int(pod["spec"]["containers"][0]["resources"]["limits"].get(GPU, "0"))
                for node in self.kube.nodes.values():
                    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
                    if (not ready or node["spec"].get("unschedulable") or self.free_gpus(node) < want
                            or not tolerates(pod, node["spec"].get("taints") or [])):
                        continue
                    pod["spec"]["nodeName"] = node["metadata"]["name"]
                    pod["status"] = {
                        "phase": "Running",
                        "startTime": ts(time.time()),
                        "conditions": [{"type": "PodScheduled", "status": "True"}],
                    }
                    self.bound[name] = time.monotonic()
                    self.tl.mark(f"scheduler: pod {name} bound to {node['metadata']['name']}")
                    break


def join_node(kube: FakeKube, name: str, labels: dict[str, str], taints: list[dict[str, str]]) -> None:
    """What ``kubeadm join`` leaves behind: a Ready Node with the registration's labels and taints."""
    kube.add_node(name, 8, labels=labels, taints=taints)


def parse_kubeadm_join(user_data: str) -> tuple[str, dict[str, str], list[dict[str, str]]]:
    """(node name, node labels, taints) from the builtin:k8s user data's JoinConfiguration."""
    name = re.search(r"nodeRegistration:\s*\n\s*name:\s*\"([^\"]+)\"", user_data)
    labels = re.search(r"node-labels:\s*\"([^\"]+)\"", user_data)
    taints = re.findall(r"- key: (\S+)\s*\n\s*value: \"([^\"]*)\"\s*\n\s*effect: (\S+)", user_data)
    assert name and labels and taints, f"no JoinConfiguration in the user data:\n{user_data}"
    lab = dict(kv.split("=", 1) for kv in labels.group(1).split(","))
    out = [{"key": k, "value": v, "effect": e} for k, v, e in taints]
    # a gang member's extra taint is filled in by the script at boot (GANG_TAINT, from GANG_ID;
    # tests/aws/test_templates.py runs that part through bash)
    gang = re.search(r'^GANG_ID="([^"]*)"$', user_data, re.M)
    if gang and gang.group(1):
        out.append({"key": "burst.dev/gang", "value": gang.group(1), "effect": "NoSchedule"})
    return name.group(1), lab, out


# ---- providers: simulated, and AWS on moto ----------------------------------------------------


@dataclass
class Cloud:
    """A provider plus the harness's side of it: ``before(now)`` boots/joins what the cloud runs."""

    provider: Any
    store: Store
    before: Callable[[float], None]
    is_terminated: Callable[[str], bool]
    node_of: dict[str, str]


def sim_cloud(kube: FakeKube, tl: Timeline, tmp_path: Path) -> Cloud:
    node_of: dict[str, str] = {}

    def on_ready(inst: SimInstance, t: float) -> None:
        o = inst.offer
        labels = {  # the labels the builtin:k8s template registers the node with
            "burst.dev/provider": o.cloud, "burst.dev/region": o.region, "burst.dev/zone": o.zone,
            "burst.dev/instance-type": o.instance_type, "burst.dev/gpu-model": o.gpu_model,
            "burst.dev/gpus": str(o.gpu_count), "burst.dev/instance-id": inst.burst_id,
            "burst.dev/cluster": CLUSTER,
        }
        join_node(kube, inst.burst_id, labels, [CLOUD_TAINT])
        node_of[inst.burst_id] = inst.burst_id
        tl.mark(f"kubeadm join: node {inst.burst_id} registered")

    provider = SimProvider("aws", CLUSTER, WallClock(), boot_s=1.0, running_after_s=0.3, billing_minimum_s=0,
                           on_ready=on_ready)

    def is_terminated(iid: str) -> bool:
        (si,) = [i for i in provider.instances.values() if i.burst_id == iid]
        return si.terminated_at is not None and provider.list_instances() == ()

    def before(now: float) -> None:
        provider.advance(now)  # boot/ready events due by now: on_ready joins the node

    return Cloud(provider, MemoryStore(), before, is_terminated, node_of)


def aws_cloud(kube: FakeKube, tl: Timeline, tmp_path: Path, moto: MotoServer, ec2: Any) -> Cloud:
    host = kube.url.removeprefix("http://")
    settings = settings_factory(moto.endpoint_url)(
        user_data_template="builtin:k8s",
        template_vars={"k8s_api_endpoint": host, "k8s_ca_cert_hash": "sha256:" + "0" * 64,
                       "bootstrap_token_ssm_param": ""},
    )
    provider = AwsProvider(settings, cluster=CLUSTER)
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    node_of: dict[str, str] = {}

    def ec2_instance(iid: str) -> dict[str, Any]:
        out = ec2.describe_instances(Filters=[{"Name": "tag:burst:id", "Values": [iid]}])
        (inst,) = [i for r in out["Reservations"] for i in r["Instances"]]
        return inst

    def before(now: float) -> None:
        for inst in store.live_instances():
            if not inst.cloud_id or inst.id in node_of:
                continue
            if ec2_instance(inst.id)["State"]["Name"] != "running":
                continue
            attr = ec2.describe_instance_attribute(InstanceId=inst.cloud_id, Attribute="userData")
            name, labels, taints = parse_kubeadm_join(base64.b64decode(attr["UserData"]["Value"]).decode())
            tl.mark(f"EC2: {inst.cloud_id} running; its JoinConfiguration names node {name}")
            join_node(kube, name, labels, taints)
            node_of[inst.id] = name
            tl.mark(f"kubeadm join: node {name} registered")

    def is_terminated(iid: str) -> bool:
        return ec2_instance(iid)["State"]["Name"] == "terminated"

    return Cloud(provider, store, before, is_terminated, node_of)


@pytest.fixture(params=["sim", "aws"])
def cloud_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_cloud(kind: str, request: pytest.FixtureRequest, kube: FakeKube, tl: Timeline, tmp_path: Path) -> Cloud:
    if kind == "sim":
        return sim_cloud(kube, tl, tmp_path)
    moto = request.getfixturevalue("moto")
    ec2 = request.getfixturevalue("ec2")
    return aws_cloud(kube, tl, tmp_path, moto, ec2)


def offers_for(cloud: Cloud) -> list[Any]:
    offers = aws_offers()
    if isinstance(cloud.provider, AwsProvider):
        offers = [o for o in offers if o.zone in cloud.provider.settings.regions[REGION].subnets]
    return offers


# ---- the tests ---------------------------------------------------------------------------------


def test_k8s_overflow_cycle(kube: FakeKube, cloud_kind: str, request: pytest.FixtureRequest,
                            tmp_path: Path) -> None:
    tl = Timeline(f"Kubernetes (real client, stand-in API server) + {cloud_kind} provider")
    cloud = make_cloud(cloud_kind, request, kube, tl, tmp_path)
    store = cloud.store
    queue = KubernetesQueue(K8sSettings(host=kube.url, timeout_s=5))
    controller = Controller(cluster=CLUSTER, queue=queue, gang_hold=queue, providers={"aws": cloud.provider}, store=store,
                            offers=offers_for(cloud), policy=POLICY)
    sched = Scheduler(kube, tl)
    tl.mark("set-up")

    seed_full_cluster(kube)
    jid = add_gpu_pod(kube, "train", opt_in=True)
    (job,) = queue.snapshot().pending
    assert (job.id, job.may_burst, job.gpus, job.reason) == (jid, True, 8, "Unschedulable")
    sched.step()
    assert "nodeName" not in kube.pods[("ml", "train")]["spec"], "no on-prem node can take it"
    tl.mark("pod ml/train Unschedulable (on-prem full)")

    def before(now: float) -> None:
        cloud.before(now)
        sched.step()

    # launch on the first tick
    _, results = tick_until(controller, lambda r: r.executed.launched, timeout=10, what="a launch", before=before)
    assert len(results) == 1, "with wait_threshold_s=0 the first tick must launch"
    (lc,) = [a for a in results[-1].plan.actions if isinstance(a, Launch)]
    assert lc.for_jobs == (jid,) and lc.offer.gpu_count >= 8
    iid = lc.intent_id
    tl.mark(f"tick 1: Launch {iid}")
    everything = list(results)

    # the instance boots and joins; the controller marks it joined
    def joined(r: TickResult) -> bool:
        inst = store.get_instance(iid)
        return inst is not None and inst.state is InstanceState.JOINED

    _, results = tick_until(controller, joined, timeout=30, what=f"{iid} joined", before=before)
    everything += results
    node = cloud.node_of[iid]
    tl.mark(f"store: joined as node {node}")
    obj = kube.nodes[node]
    assert obj["metadata"]["labels"]["burst.dev/instance-id"] == iid
    assert CLOUD_TAINT in obj["spec"]["taints"]
    assert sum(len(r.executed.launched) for r in everything) == 1, "no second launch while it booted"

    # the pod is bound to it and runs; the snapshot agrees
    def running_there(r: TickResult) -> bool:
        return kube.pods[("ml", "train")]["spec"].get("nodeName") == node

    _, results = tick_until(controller, running_there, timeout=10, what="the pod bound to the burst node",
                            before=before)
    everything += results
    snap = queue.snapshot()
    (run,) = [j for j in snap.running if j.id == jid]
    assert run.node_names == (node,)
    sn = next(n for n in snap.nodes if n.name == node)
    assert (sn.instance_id, sn.gpus_used, sn.running_jobs, sn.is_cloud) == (iid, 8, 1, True)
    assert jid not in {j.id for j in snap.pending}

    # the pod succeeds; no drain while it ran
    def done(r: TickResult) -> bool:
        return kube.pods[("ml", "train")]["status"]["phase"] == "Succeeded"

    _, results = tick_until(controller, done, timeout=RUN_SECONDS + 10, what="the pod to succeed", before=before)
    everything += results
    assert not any(isinstance(a, Drain | Terminate) for r in results[:-1] for a in r.plan.actions)

    # idle -> cordon (drain) ...
    _, results = tick_until(controller, lambda r: r.executed.drained, timeout=15, what="the drain",
                            before=before)
    everything += results
    assert results[-1].executed.drained == [iid]
    assert kube.nodes[node]["spec"]["unschedulable"] is True
    assert kube.nodes[node]["metadata"]["annotations"]["burst.dev/drain-reason"].startswith("idle")
    tl.mark(f"API server: node {node} cordoned")

    # ... then delete the node and terminate the instance
    def terminated(r: TickResult) -> bool:
        inst = store.get_instance(iid)
        return inst is not None and inst.state is InstanceState.TERMINATED

    _, results = tick_until(controller, terminated, timeout=15, what=f"{iid} TERMINATED", before=before)
    everything += results
    assert node not in kube.nodes
    assert ("DELETE", f"/api/v1/nodes/{node}") in kube.calls
    assert cloud.is_terminated(iid)
    tl.mark("API server: node deleted; cloud: instance terminated; store: terminated")

    for _ in range(3):  # quiet afterwards: nothing launched again
        res = controller.tick(time.time())
        assert not res.plan.actions, res.plan.actions
    launches = [a for r in everything for a in r.plan.actions if isinstance(a, Launch)]
    assert len(launches) == 1
    tl.report()
    store.close()


def test_k8s_pods_without_opt_in_never_launch(kube: FakeKube, cloud_kind: str, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    tl = Timeline(f"Kubernetes + {cloud_kind}: pods that did not opt in")
    cloud = make_cloud(cloud_kind, request, kube, tl, tmp_path)
    queue = KubernetesQueue(K8sSettings(host=kube.url, timeout_s=5))
    controller = Controller(cluster=CLUSTER, queue=queue, gang_hold=queue, providers={"aws": cloud.provider},
                            store=cloud.store, offers=offers_for(cloud), policy=POLICY)
    seed_full_cluster(kube)
    plain = add_gpu_pod(kube, "local-only", opt_in=False)
    kube.add_pod("labelled-false", "ml", gpus=8, labels={"burst.dev/allow-cloud": "false"})
    pending = {j.id: j.may_burst for j in queue.snapshot().pending}
    assert pending == {plain: False, "ml/pod/labelled-false": False}

    results: list[TickResult] = []
    t_end = time.monotonic() + 2.0
    while len(results) < 12 or time.monotonic() < t_end:
        cloud.before(time.time())
        results.append(controller.tick(time.time()))
        time.sleep(0.1)
    tl.mark(f"{len(results)} ticks over unschedulable pods that did not opt in: no launch")
    assert all(not r.skipped for r in results)
    assert not any(isinstance(a, Launch) for r in results for a in r.plan.actions)
    assert cloud.store.instances() == [] and list(cloud.provider.list_instances()) == []

    # control: an opted-in pod on the same controller is launched for on the next tick
    jid = add_gpu_pod(kube, "opted-in", opt_in=True)
    _, more = tick_until(controller, lambda r: r.executed.launched, timeout=10, what="the control launch")
    (lc,) = [a for r in more for a in r.plan.actions if isinstance(a, Launch)]
    assert lc.for_jobs == (jid,)
    tl.mark("control: the opted-in pod is launched for on the next tick")
    tl.report()
    cloud.store.close()


def test_k8s_gang_members_join_held_and_are_released_together(
    kube: FakeKube, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A 2-pod Job bursts as a gang on AWS (moto) while an older opted-in pod (the thief) also
    waits. The gang's first instance joins 2 s before its second, and before the thief's own
    instance: without the hold the thief, first in line, would take it. With it the thief waits
    for its own node, and once both members have joined the controller lifts both holds in one
    tick (audited) and the Job's pods land on its two nodes."""
    tl = Timeline("Kubernetes gang hold (stand-in API server) + aws provider")
    cloud = make_cloud("aws", request, kube, tl, tmp_path)
    store = cloud.store
    queue = KubernetesQueue(K8sSettings(host=kube.url, timeout_s=5))
    controller = Controller(cluster=CLUSTER, queue=queue, gang_hold=queue, providers={"aws": cloud.provider}, store=store,
                            offers=offers_for(cloud), policy=POLICY)
    sched = Scheduler(kube, tl)
    seed_full_cluster(kube)
    thief = add_gpu_pod(kube, "thief", opt_in=True)  # older than the Job: first in the scheduler's line
    kube.add_job("trainer", "ml", parallelism=2, gpus_per_pod=8, labels=OPT_IN)
    with kube.lock:
        gang_pods = [p["metadata"]["name"] for p in kube.pods_of_job("ml", "trainer")]
        for name in gang_pods:
            kube.pods[("ml", name)]["spec"]["tolerations"] = [TOLERATION]
    (gang,) = [j for j in queue.snapshot().pending if j.id.endswith("trainer")]
    assert gang.nodes == 2 and gang.may_burst

    ec2 = request.getfixturevalue("ec2")
    joined_at: dict[str, float] = {}
    held_back: set[str] = set()  # gang members kept from joining for a while

    def before(now: float) -> None:
        # What running instances do: join with their JoinConfiguration. The first gang member
        # joins at once; the thief's instance only after it; the second member 2 s after it.
        for inst in store.live_instances():
            if not inst.cloud_id or inst.id in cloud.node_of:
                continue
            # held back for 2 s, and for one step at least (a loaded machine's step can be longer)
            if inst.gang_id and joined_at and (time.monotonic() - min(joined_at.values()) < 2.0 or not held_back):
                held_back.add(inst.id)
                continue
            if not inst.gang_id and not joined_at:
                continue
            raw = ec2.describe_instances(InstanceIds=[inst.cloud_id])["Reservations"][0]["Instances"][0]
            if raw["State"]["Name"] != "running":
                continue
            attr = ec2.describe_instance_attribute(InstanceId=inst.cloud_id, Attribute="userData")
            name, labels, taints = parse_kubeadm_join(base64.b64decode(attr["UserData"]["Value"]).decode())
            join_node(kube, name, labels, taints)
            cloud.node_of[inst.id] = name
            tl.mark(f"kubeadm join: node {name} registered (taints {[t['key'] for t in taints]})")
            if inst.gang_id:
                joined_at[inst.id] = time.monotonic()
                break  # one gang member per step
        sched.step()

    _, results = tick_until(controller, lambda r: any(isinstance(a, Launch) for a in r.plan.actions),
                            timeout=10, what="the launches", before=before)
    launches = [a for r in results for a in r.plan.actions if isinstance(a, Launch)]
    gang_launches = [lc for lc in launches if lc.gang_id]
    assert len(gang_launches) == 2 and len({lc.gang_id for lc in gang_launches}) == 1
    members = {lc.intent_id for lc in gang_launches}

    def gang_running(r: TickResult) -> bool:
        for a in r.plan.actions:
            if not isinstance(a, Launch):
                tl.mark(f"tick: {type(a).__name__} {getattr(a, 'instance_id', '')}: {getattr(a, 'reason', '')[:60]}")
        return all(kube.pods.get(("ml", n), {}).get("spec", {}).get("nodeName") for n in gang_pods)

    try:
        tick_until(controller, gang_running, timeout=40, what="the gang's pods running", before=before)
    finally:
        print(tl.report())
    member_nodes = {cloud.node_of[m] for m in members}
    assert held_back, "the second member must have joined after the first"
    # The thief, first in line, was never placed on a held member; it got its own instance.
    assert kube.pods[("ml", "thief")]["spec"].get("nodeName") not in member_nodes, "a held node was taken"
    # Plain Job pods are placed one by one (no coscheduler): one may take any free node (the
    # thief's, once it is done), but the members serve the gang once released.
    assert {kube.pods[("ml", n)]["spec"]["nodeName"] for n in gang_pods} & member_nodes
    releases = {r.subject for r in store.audit_rows(limit=1000) if r.action == "release-gang-hold"}
    assert releases == members
    assert all("burst.dev/gang" not in {t["key"] for t in kube.nodes[n]["spec"]["taints"]} for n in member_nodes)
    tl.mark(f"gang pods on {sorted(member_nodes)}; thief {thief} on {kube.pods[('ml', 'thief')]['spec'].get('nodeName')}")
