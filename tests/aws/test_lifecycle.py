"""list_instances / find / terminate against moto, and the EC2-state and spot-reclaim mapping."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from burst.domain import CloudState, Market
from burst.errors import TransientProviderError
from providers.aws import AwsProvider, AwsSettings, cloud_instance_from_ec2
from tests.aws.helpers import CLUSTER, make_offer, make_spec, settings_factory
from tests.support.moto_server import Fault, MotoServer, fake_aws_env

WEST = make_offer("g5.xlarge", region="us-west-2", zone="usw2-az1", gpu_model="A10G", gpus=1)


def test_list_covers_every_region_and_only_this_cluster(
    provider: AwsProvider, aws_settings: Callable[..., AwsSettings]
) -> None:
    east = provider.launch(make_spec("b-east"))
    west = provider.launch(make_spec("b-west", WEST))
    other = AwsProvider(aws_settings(), cluster="site-b")
    foreign = other.launch(make_spec("b-foreign", cluster="site-b"))

    listed = {i.cloud_id: i for i in provider.list_instances()}
    assert set(listed) == {east.cloud_id, west.cloud_id}
    assert listed[west.cloud_id].region == "us-west-2" and listed[west.cloud_id].zone == "usw2-az1"
    assert listed[east.cloud_id].burst_id == "b-east"
    assert all(i.state == CloudState.RUNNING for i in listed.values())
    assert [i.cloud_id for i in other.list_instances()] == [foreign.cloud_id]
    assert provider.find("b-foreign") is None  # another cluster's intent is not ours


def test_list_uses_the_paginator(provider: AwsProvider, moto: MotoServer) -> None:
    for i in range(3):
        provider.launch(make_spec(f"b-page-{i}", make_offer("g5.xlarge", gpus=1)))
    moto.reset_counts()
    assert len(provider.list_instances()) == 3
    requests = moto.requests("DescribeInstances")
    assert len(requests) == 2  # one per region
    assert all(r.params["Filter.1.Name"] == "tag:burst:cluster" for r in requests)
    assert all(r.params["Filter.1.Value.1"] == CLUSTER for r in requests)


def test_a_failing_region_fails_the_whole_listing(provider: AwsProvider, moto: MotoServer) -> None:
    """A partial list would make the controller think the missing region's instances were lost."""
    provider.launch(make_spec("b-1"))
    moto.inject(Fault(action="DescribeInstances", code="RequestLimitExceeded", status=503, region="us-west-2"))
    with pytest.raises(TransientProviderError):
        provider.list_instances()


def test_find(provider: AwsProvider) -> None:
    inst = provider.launch(make_spec("b-find", WEST))
    found = provider.find("b-find")
    assert found is not None and found.cloud_id == inst.cloud_id and found.region == "us-west-2"
    assert provider.find("b-unknown") is None


def test_find_after_a_crash_sees_what_the_previous_process_launched(
    aws_settings: Callable[..., AwsSettings],
) -> None:
    before = AwsProvider(aws_settings(), cluster=CLUSTER)
    inst = before.launch(make_spec("b-crash"))
    after = AwsProvider(aws_settings(), cluster=CLUSTER)  # a new process: no in-memory state
    found = after.find("b-crash")
    assert found is not None and found.cloud_id == inst.cloud_id


def test_find_prefers_a_live_instance_over_a_terminated_one(provider: AwsProvider, ec2: Callable[..., Any]) -> None:
    old = provider.launch(make_spec("b-dup"))
    provider.terminate([old.cloud_id])
    # moto ignores ClientToken, so a second run of the same intent makes a second instance
    fresh = AwsProvider(provider.settings, cluster=CLUSTER).launch(make_spec("b-dup"))
    found = provider.find("b-dup")
    assert found is not None and found.cloud_id == fresh.cloud_id and found.state != CloudState.TERMINATED


def test_terminate_is_idempotent(provider: AwsProvider, moto: MotoServer) -> None:
    inst = provider.launch(make_spec("b-term"))
    provider.terminate([inst.cloud_id])
    provider.terminate([inst.cloud_id])
    found = provider.find("b-term")
    assert found is not None and found.state == CloudState.TERMINATED
    assert moto.count("TerminateInstances") == 2


@pytest.mark.parametrize("unknown", ["i-0123456789abcdef0", "i-deadbeef", "does-not-exist"])
def test_terminate_unknown_ids_is_success(provider: AwsProvider, unknown: str) -> None:
    provider.terminate([unknown])
    provider.terminate([])


def test_terminate_mixed_batch_drops_missing_ids_and_retries_the_rest(
    provider: AwsProvider, moto: MotoServer
) -> None:
    a = provider.launch(make_spec("b-a"))
    b = provider.launch(make_spec("b-b"))
    moto.reset_counts()
    provider.terminate([a.cloud_id, "i-0aaaaaaaaaaaaaaa1", b.cloud_id, "i-0aaaaaaaaaaaaaaa2"])
    states = {i.cloud_id: i.state for i in provider.list_instances()}
    assert states == {a.cloud_id: CloudState.TERMINATED, b.cloud_id: CloudState.TERMINATED}
    # known ids go to their region; the unknown ones were tried in each region, then given up
    calls = moto.requests("TerminateInstances")
    assert len(calls) <= 4


def test_terminate_without_region_memory_searches_regions(
    provider: AwsProvider, aws_settings: Callable[..., AwsSettings]
) -> None:
    east = provider.launch(make_spec("b-e"))
    west = provider.launch(make_spec("b-w", WEST))
    fresh = AwsProvider(aws_settings(), cluster=CLUSTER)
    fresh.terminate([west.cloud_id, east.cloud_id])
    states = {i.cloud_id: i.state for i in provider.list_instances()}
    assert states == {east.cloud_id: CloudState.TERMINATED, west.cloud_id: CloudState.TERMINATED}


def test_terminate_batches_at_most_1000_ids_per_call(provider: AwsProvider, moto: MotoServer) -> None:
    ids = [f"i-{n:017x}" for n in range(1, 1502)]
    provider.terminate(ids)
    calls = moto.requests("TerminateInstances")
    sizes = [sum(1 for k in r.params if k.startswith("InstanceId.")) for r in calls]
    assert max(sizes) == 1000
    assert len(calls) == 4  # 1000 + 501 ids, in each of the two regions; all unknown


def test_spot_reclaim_shows_interrupted(provider: AwsProvider, moto: MotoServer) -> None:
    spot = provider.launch(make_spec("b-reclaimed", make_offer(market=Market.SPOT)))
    kept = provider.launch(make_spec("b-kept", make_offer(market=Market.SPOT)))
    moto.spot_reclaim(spot.cloud_id, "us-east-1")
    by_id = {i.cloud_id: i for i in provider.list_instances()}
    assert by_id[spot.cloud_id].state == CloudState.TERMINATED
    assert by_id[spot.cloud_id].interrupted is True
    assert by_id[spot.cloud_id].market == Market.SPOT
    assert by_id[kept.cloud_id].interrupted is False


def test_user_terminate_is_not_an_interruption(provider: AwsProvider) -> None:
    inst = provider.launch(make_spec("b-user", make_offer(market=Market.SPOT)))
    provider.terminate([inst.cloud_id])
    found = provider.find("b-user")
    assert found is not None and found.state == CloudState.TERMINATED and not found.interrupted


# ---- pure mapping, on a describe_instances answer captured from moto --------------------------


@pytest.fixture(scope="module")
def captured_once(moto_server: MotoServer) -> dict[str, Any]:
    """One describe_instances answer for a spot instance, captured from moto once per module."""
    import boto3

    with pytest.MonkeyPatch.context() as mp:
        for key, value in fake_aws_env().items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE")
        moto_server.reset()
        provider = AwsProvider(settings_factory(moto_server.endpoint_url)(), cluster=CLUSTER)
        inst = provider.launch(make_spec("b-cap", make_offer(market=Market.SPOT)))
        client = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_server.endpoint_url)
        resp = client.describe_instances(InstanceIds=[inst.cloud_id])
    return dict(resp["Reservations"][0]["Instances"][0])


@pytest.fixture
def captured(captured_once: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(captured_once)


@pytest.mark.parametrize(
    ("ec2_state", "expected"),
    [
        ("pending", CloudState.PENDING),
        ("running", CloudState.RUNNING),
        ("stopping", CloudState.STOPPING),
        ("stopped", CloudState.STOPPING),
        ("shutting-down", CloudState.STOPPING),
        ("terminated", CloudState.TERMINATED),
        ("something-new", CloudState.FAILED),
    ],
)
def test_state_mapping(captured: dict[str, Any], ec2_state: str, expected: CloudState) -> None:
    raw = copy.deepcopy(captured)
    raw["State"] = {"Name": ec2_state}
    assert cloud_instance_from_ec2(raw, region="us-east-1").state == expected


@pytest.mark.parametrize(
    ("reason", "interrupted"),
    [
        ("Server.SpotInstanceTermination", True),
        ("Server.SpotInstanceShutdown", True),
        ("Client.UserInitiatedShutdown", False),
        ("Server.InternalError", False),
        (None, False),
    ],
)
def test_spot_reclaim_mapping(captured: dict[str, Any], reason: str | None, interrupted: bool) -> None:
    raw = copy.deepcopy(captured)
    raw["State"] = {"Code": 48, "Name": "terminated"}
    if reason is None:
        raw.pop("StateReason", None)
    else:
        raw["StateReason"] = {"Code": reason, "Message": f"{reason}: edited"}
    inst = cloud_instance_from_ec2(raw, region="us-east-1")
    assert inst.interrupted is interrupted
    assert inst.market == Market.SPOT


def test_mapping_fields(captured: dict[str, Any]) -> None:
    raw = copy.deepcopy(captured)
    inst = cloud_instance_from_ec2(raw, region="us-east-1", zone_ids={"us-east-1b": "use1-az1"})
    assert inst.burst_id == "b-cap"
    assert inst.zone == "use1-az1"
    assert inst.address == raw["PrivateIpAddress"]
    assert inst.launched_at == raw["LaunchTime"].timestamp()
    raw["LaunchTime"] = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    raw["Placement"]["AvailabilityZoneId"] = "use1-az9"
    raw["Tags"] = [t for t in raw["Tags"] if t["Key"] != "burst:id"]
    raw.pop("InstanceLifecycle")
    inst = cloud_instance_from_ec2(raw, region="us-east-1")
    assert inst.launched_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert inst.zone == "use1-az9"
    assert inst.burst_id == ""  # an untagged instance of the cluster: an orphan by definition
    assert inst.market == Market.ON_DEMAND
