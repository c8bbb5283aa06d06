"""Cross-cloud failover (issue 11): when one cloud answers every launch with capacity errors, the
overflow is served by the other within the wait target. Both ways.

Everything real but the clock: one config with a live queue (the JSON queue document, played here
as a cluster would: an instance the cloud runs joins as a node, the pending job is placed on it),
real AWS (boto3 against moto over HTTP, capacity faults injected in front of moto as real EC2
answers them: HTTP 500 ``InsufficientInstanceCapacity``) and real Azure (azure-mgmt-compute against
the ARM stand-in, ``AllocationFailed`` operations or ``SkuNotAvailable``), composed by
``burst.wiring.build_runtime`` and driven by ``Controller.tick`` on a manual clock, so the policy,
the executor, the backoff and the intents are the production ones.

The catalog is a small CSV with one A100 x8 offer per cloud; its prices decide which cloud the
policy tries first, so each direction starts on the cloud that fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from burst.config import parse_config
from burst.domain import TAG_CLUSTER, TAG_ID, InstanceState
from burst.queues.jsonfile import update_doc, write_doc
from burst.store.memory import MemoryStore
from burst.wiring import AzureAccess, Runtime, build_runtime
from providers.azure import AzureProvider
from tests.aws.helpers import settings_factory
from tests.azure.helpers import azure_settings
from tests.support.arm_standin import ArmStandin, StandinCredential, client_kwargs
from tests.support.moto_server import MotoServer, capacity_fault, fresh_moto, serve_moto

CLUSTER = "xcloud"
T0 = 1_780_000_000.0
TICK_S = 30.0
WAIT_TARGET_MIN = 10.0
CSV_HEADER = "cloud,instance_type,accelerator_name,accelerator_count,vcpus,memory_gib,region,availability_zone,price_per_hour,spot_price_per_hour\n"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    yield from serve_moto()


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    return fresh_moto(moto_server, monkeypatch)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


@dataclass
class Site:
    rt: Runtime
    clock: Clock
    queue: Path
    moto: MotoServer
    standin: ArmStandin

    def aws_instances(self) -> list[dict[str, Any]]:
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=self.moto.endpoint_url,
                           config=Config(retries={"total_max_attempts": 1}))
        pages = ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": f"tag:{TAG_CLUSTER}", "Values": [CLUSTER]}])
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def azure_vms(self) -> list[dict[str, Any]]:
        return [v for v in self.standin.vms() if (v.get("tags") or {}).get(TAG_CLUSTER) == CLUSTER]

    def play(self) -> str | None:
        """The cluster's side after a tick: every instance the controller knows running joins as a
        node; the pending job is placed on the first node with room. Returns the burst id the job
        was placed on, if it was."""
        live = [i for i in self.rt.store.instances() if i.state in (InstanceState.RUNNING, InstanceState.JOINED)]
        placed: list[str] = []

        def fn(doc: dict[str, Any]) -> None:
            nodes = doc["nodes"]
            names = {n["name"] for n in nodes}
            for inst in live:
                if inst.id not in names:
                    nodes.append({"name": inst.id, "gpus": inst.gpus, "gpus_used": 0, "running_jobs": 0,
                                  "instance_id": inst.id, "schedulable": True})
            for job in list(doc["pending"]):
                for n in nodes:
                    if n.get("instance_id") and n["gpus"] - n["gpus_used"] >= job["gpus"]:
                        n["gpus_used"] += job["gpus"]
                        n["running_jobs"] += 1
                        doc["pending"].remove(job)
                        doc["running"].append({**job, "start_time": self.clock.t, "node_names": [n["name"]]})
                        placed.append(n["name"])
                        break

        update_doc(self.queue, fn)
        return placed[0] if placed else None

    def serve(self) -> tuple[str, float]:
        """Tick every TICK_S until the job runs on a burst node: (burst id, wait in seconds)."""
        for _ in range(int(WAIT_TARGET_MIN * 60 / TICK_S) * 3):
            self.clock.t += TICK_S
            self.rt.controller.tick(self.clock.t)
            bid = self.play()
            if bid is not None:
                return bid, self.clock.t - T0
        raise AssertionError(f"the job was not served; instances: {self.rt.store.instances()}")


def build_site(tmp_path: Path, moto: MotoServer, standin: ArmStandin, *, aws_price: float, azure_price: float) -> Site:
    catalog = tmp_path / "prices.csv"
    catalog.write_text(
        CSV_HEADER
        + f"aws,p4d.24xlarge,A100,8,96,1152,us-east-1,use1-az1,{aws_price},{aws_price / 3:.4f}\n"
        + f"azure,Standard_ND96asr_v4,A100,8,96,900,eastus,,{azure_price},{azure_price / 3:.4f}\n"
    )
    queue = tmp_path / "queue.json"
    write_doc(queue, {
        "nodes": [{"name": "onprem-0", "gpus": 8, "gpus_used": 8, "running_jobs": 1}],
        "running": [{"id": "hog", "gpus": 8, "submit_time": T0 - 7200, "start_time": T0 - 7000,
                     "node_names": ["onprem-0"], "may_burst": False}],
        "pending": [{"id": "train-1", "gpus": 8, "submit_time": T0, "may_burst": True, "team": "x"}],
    })
    aws = settings_factory(moto.endpoint_url)()
    raw = {
        "cluster": CLUSTER,
        "tick_interval_s": TICK_S,
        "queue": {"kind": "jsonfile", "jsonfile": str(queue)},
        "clouds": {
            "aws": {"settings": json.loads(aws.model_dump_json())},  # a live queue: real unless said otherwise
            "azure": {"settings": json.loads(azure_settings(standin).model_dump_json())},
        },
        "offers": {"catalog": str(catalog), "regions": ["us-east-1", "eastus"], "accelerators": ["A100"]},
        "policy": {"wait_target_min": WAIT_TARGET_MIN, "wait_threshold_min": 1.0, "default_boot_min": 1.0},
    }
    cfg = parse_config(raw)
    assert cfg.real_clouds() == ("aws", "azure")
    clock = Clock(T0)
    access = AzureAccess(credential=StandinCredential(standin.token), client_kwargs=client_kwargs())
    rt = build_runtime(cfg, store=MemoryStore(), clock=clock, azure_access=access)
    assert isinstance(rt.providers["azure"], AzureProvider)
    assert sorted(o.cloud for o in rt.controller.offers) == ["aws", "azure"]
    moto.reset_counts()
    return Site(rt, clock, queue, moto, standin)


def test_aws_out_of_capacity_overflow_is_served_by_azure_within_the_wait_target(
    tmp_path: Path, moto: MotoServer, standin: ArmStandin, capsys: pytest.CaptureFixture[str]
) -> None:
    site = build_site(tmp_path, moto, standin, aws_price=20.0, azure_price=27.197)  # AWS is tried first
    moto.inject(capacity_fault())  # every RunInstances, every region
    bid, wait = site.serve()

    inst = site.rt.store.get_instance(bid)
    assert inst is not None and inst.cloud == "azure" and inst.instance_type == "Standard_ND96asr_v4"
    assert wait <= WAIT_TARGET_MIN * 60
    runs = moto.requests("RunInstances")
    assert runs and all(r.injected == "InsufficientInstanceCapacity" for r in runs)  # AWS was tried, and refused
    assert site.aws_instances() == []
    (vm,) = site.azure_vms()  # one VM, for this intent
    assert vm["tags"][TAG_ID] == bid
    with capsys.disabled():
        print(f"\n[cross-cloud aws->azure] served on {inst.cloud}/{inst.region} after {wait:.0f} s "
              f"(target {WAIT_TARGET_MIN * 60:.0f} s), {len(runs)} refused RunInstances")


@pytest.mark.parametrize("fault", ["AllocationFailed", "SkuNotAvailable"])
def test_azure_out_of_capacity_overflow_is_served_by_aws_within_the_wait_target(
    tmp_path: Path, moto: MotoServer, standin: ArmStandin, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site = build_site(tmp_path, moto, standin, aws_price=30.0, azure_price=27.197)  # Azure is tried first
    standin.fail("put_vm", fault, times=-1)  # AllocationFailed: a failed operation; SkuNotAvailable: a 409
    bid, wait = site.serve()

    inst = site.rt.store.get_instance(bid)
    assert inst is not None and inst.cloud == "aws" and inst.instance_type == "p4d.24xlarge"
    assert wait <= WAIT_TARGET_MIN * 60
    puts = standin.count("PUT", r"/virtualMachines/")
    assert puts >= 1  # Azure was tried, and refused
    assert site.azure_vms() == []  # a failed allocation leaves no VM behind
    (ec2,) = site.aws_instances()
    assert {t["Key"]: t["Value"] for t in ec2["Tags"]}[TAG_ID] == bid
    with capsys.disabled():
        print(f"\n[cross-cloud azure->aws, {fault}] served on {inst.cloud}/{inst.region} after {wait:.0f} s "
              f"(target {WAIT_TARGET_MIN * 60:.0f} s), {puts} refused VM PUTs")
