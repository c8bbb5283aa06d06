"""AwsProvider.launch against moto over HTTP: what reaches EC2, and what comes back."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from burst.domain import REQUIRED_TAGS, TAG_CLUSTER, TAG_ID, CloudState, Market
from burst.errors import CapacityError, PermanentProviderError, TransientProviderError
from providers.aws import AwsProvider, AwsSettings
from tests.aws.helpers import CLUSTER, INSTANCE_PROFILE, SSM_AMI, default_subnets, make_offer, make_spec
from tests.support.moto_server import MotoServer, throttle_fault


def describe(ec2: Any, instance_id: str) -> dict[str, Any]:
    return dict(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0])


def tags_of(raw: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def test_launch_tags_instance_and_root_volume(provider: AwsProvider, ec2: Callable[..., Any]) -> None:
    spec = make_spec("b-tags")
    inst = provider.launch(spec)

    assert inst.cloud == "aws" and inst.cloud_id.startswith("i-")
    assert inst.burst_id == "b-tags"
    assert inst.region == "us-east-1" and inst.zone == "use1-az1"
    assert inst.instance_type == "p4d.24xlarge"
    assert inst.state in (CloudState.PENDING, CloudState.RUNNING)
    assert inst.address and inst.launched_at is not None
    for key in REQUIRED_TAGS:
        assert inst.tags[key] == spec.tags[key]

    raw = describe(ec2("us-east-1"), inst.cloud_id)
    for key in REQUIRED_TAGS:
        assert tags_of(raw)[key] == spec.tags[key], key
    volumes = ec2("us-east-1").describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [inst.cloud_id]}]
    )["Volumes"]
    assert len(volumes) == 1
    vol = volumes[0]
    assert {k: tags_of(vol)[k] for k in REQUIRED_TAGS} == {k: spec.tags[k] for k in REQUIRED_TAGS}
    assert vol["Size"] == 200 and vol["VolumeType"] == "gp3" and vol["Encrypted"] is True


def test_launch_request_imdsv2_profile_token_subnet(
    provider: AwsProvider, ec2: Callable[..., Any], moto: MotoServer
) -> None:
    inst = provider.launch(make_spec("b-req", make_offer(zone="use1-az2")))
    raw = describe(ec2("us-east-1"), inst.cloud_id)

    assert raw["MetadataOptions"]["HttpTokens"] == "required"
    assert raw["MetadataOptions"]["HttpEndpoint"] == "enabled"
    assert raw["SubnetId"] == default_subnets(moto.endpoint_url, "us-east-1")["use1-az2"]
    assert inst.zone == "use1-az2"
    assert raw["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{INSTANCE_PROFILE}")

    (run,) = moto.requests("RunInstances")
    assert run.params["ClientToken"] == "b-req"
    assert run.params["MinCount"] == run.params["MaxCount"] == "1"
    # the AMI came from the SSM parameter, looked up once
    import boto3

    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto.endpoint_url)
    assert run.params["ImageId"] == ssm.get_parameter(Name=SSM_AMI)["Parameter"]["Value"]
    assert moto.count("GetParameter") == 2  # the provider's one, and ours just now


def test_subnet_per_az_with_az_name_keys(aws_settings: Callable[..., AwsSettings], moto: MotoServer) -> None:
    """Settings may key subnets by AZ name; offers name AZ ids. The provider maps between them."""
    import boto3

    client = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto.endpoint_url)
    by_name = {s["AvailabilityZone"]: s["SubnetId"] for s in client.describe_subnets()["Subnets"]}
    az_id_of = {z["ZoneName"]: z["ZoneId"] for z in client.describe_availability_zones()["AvailabilityZones"]}
    provider = AwsProvider(aws_settings(east={"subnets": by_name}), cluster=CLUSTER)
    for name, subnet in sorted(by_name.items())[:3]:
        inst = provider.launch(make_spec(f"b-{name}", make_offer("g5.xlarge", zone=az_id_of[name], gpus=1)))
        raw = describe(client, inst.cloud_id)
        assert raw["SubnetId"] == subnet
        assert inst.zone == az_id_of[name]


def test_user_data_is_rendered_from_the_template(provider: AwsProvider, ec2: Callable[..., Any]) -> None:
    inst = provider.launch(make_spec("b-ud"))
    attr = ec2("us-east-1").describe_instance_attribute(InstanceId=inst.cloud_id, Attribute="userData")
    text = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert text.startswith("#!/bin/bash")
    assert "-Z -N b-ud --conf-server ctld.example.org:6817" in text
    assert "Feature=cloud,aws,us-east-1" in text
    assert "Gres=gpu:a100:8" in text  # GRES types are case-sensitive; sites use lower case
    assert 'server = "https://harbor.example.org"' in text
    assert '[host."https://123456789012.dkr.ecr.us-east-1.amazonaws.com"]' in text
    assert "$cluster" not in text and "${" in text  # burst's variables filled, shell's kept


def test_explicit_user_data_wins(provider: AwsProvider, ec2: Callable[..., Any]) -> None:
    inst = provider.launch(make_spec("b-ud2", user_data="#!/bin/sh\necho hello\n"))
    attr = ec2("us-east-1").describe_instance_attribute(InstanceId=inst.cloud_id, Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]).decode() == "#!/bin/sh\necho hello\n"


def test_spot_market_options(provider: AwsProvider, ec2: Callable[..., Any], moto: MotoServer) -> None:
    inst = provider.launch(make_spec("b-spot", make_offer(market=Market.SPOT)))
    assert inst.market == Market.SPOT
    (run,) = moto.requests("RunInstances")
    assert run.params["InstanceMarketOptions.MarketType"] == "spot"
    assert run.params["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    assert run.params["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "terminate"
    raw = describe(ec2("us-east-1"), inst.cloud_id)
    assert raw["InstanceLifecycle"] == "spot"
    listed = provider.find("b-spot")
    assert listed is not None and listed.market == Market.SPOT


def test_on_demand_has_no_market_options(provider: AwsProvider, moto: MotoServer) -> None:
    inst = provider.launch(make_spec("b-od"))
    assert inst.market == Market.ON_DEMAND
    (run,) = moto.requests("RunInstances")
    assert not any(k.startswith("InstanceMarketOptions") for k in run.params)


def test_spot_disallowed_is_an_offer_level_capacity_error(
    aws_settings: Callable[..., AwsSettings], moto: MotoServer
) -> None:
    provider = AwsProvider(aws_settings(allow_spot=False), cluster=CLUSTER)
    offer = make_offer(market=Market.SPOT)
    with pytest.raises(CapacityError) as err:
        provider.launch(make_spec("b-nospot", offer))
    assert err.value.code == "SpotNotAllowed" and err.value.offer_key == offer.key
    assert moto.count("RunInstances") == 0
    assert not provider.supports(offer)


def test_placement_group_created_once_and_used(
    aws_settings: Callable[..., AwsSettings], moto: MotoServer
) -> None:
    provider = AwsProvider(aws_settings(), cluster=CLUSTER)
    for i in range(2):
        provider.launch(make_spec(f"b-gang-{i}", placement_group="gang-7"))
    # a second controller process (fresh provider) meets the existing group: Duplicate is success
    AwsProvider(aws_settings(), cluster=CLUSTER).launch(make_spec("b-gang-2", placement_group="gang-7"))

    creates = moto.requests("CreatePlacementGroup")
    assert [r.params["GroupName"] for r in creates] == ["gang-7", "gang-7"]
    assert creates[0].params["Strategy"] == "cluster"
    assert creates[0].params["TagSpecification.1.ResourceType"] == "placement-group"
    runs = moto.requests("RunInstances")
    assert len(runs) == 3 and all(r.params["Placement.GroupName"] == "gang-7" for r in runs)


def test_efa_interface_when_supported(provider: AwsProvider, moto: MotoServer, ec2: Callable[..., Any]) -> None:
    provider.launch(make_spec("b-efa", make_offer("p4d.24xlarge", zone="use1-az2"), efa=True))
    provider.launch(make_spec("b-noefa", make_offer("g5.xlarge", zone="use1-az2", gpus=1), efa=True))
    efa_run, plain_run = moto.requests("RunInstances")
    subnet = default_subnets(moto.endpoint_url, "us-east-1")["use1-az2"]
    assert efa_run.params["NetworkInterface.1.InterfaceType"] == "efa"
    assert efa_run.params["NetworkInterface.1.SubnetId"] == subnet
    assert efa_run.params["NetworkInterface.1.SecurityGroupId.1"].startswith("sg-")
    assert "SubnetId" not in efa_run.params
    # p4d has 4 network cards and takes 4 EFAs: one per card, EFA-only beyond the primary
    cards = [
        (efa_run.params[f"NetworkInterface.{k}.NetworkCardIndex"], efa_run.params[f"NetworkInterface.{k}.DeviceIndex"],
         efa_run.params[f"NetworkInterface.{k}.InterfaceType"])
        for k in range(1, 5)
    ]
    assert cards == [("0", "0", "efa"), ("1", "1", "efa-only"), ("2", "1", "efa-only"), ("3", "1", "efa-only")]
    assert "NetworkInterface.5.InterfaceType" not in efa_run.params
    assert all(efa_run.params[f"NetworkInterface.{k}.SubnetId"] == subnet for k in range(1, 5))
    # g5.xlarge has no EFA: a plain launch in the same subnet
    assert plain_run.params["SubnetId"] == subnet
    assert not any(k.startswith("NetworkInterface") for k in plain_run.params)
    assert moto.count("DescribeInstanceTypes") == 2


def test_repeated_launch_of_one_intent_creates_one_instance(provider: AwsProvider, ec2: Callable[..., Any]) -> None:
    first = provider.launch(make_spec("b-twice"))
    second = provider.launch(make_spec("b-twice"))
    assert first.cloud_id == second.cloud_id
    found = ec2("us-east-1").describe_instances(Filters=[{"Name": "tag:burst:id", "Values": ["b-twice"]}])
    assert sum(len(r["Instances"]) for r in found["Reservations"]) == 1


def test_throttled_launch_is_retried_by_botocore_with_the_same_client_token(
    aws_settings: Callable[..., AwsSettings], moto: MotoServer
) -> None:
    provider = AwsProvider(aws_settings(launch_max_attempts=2), cluster=CLUSTER)
    moto.inject(throttle_fault(times=1))
    inst = provider.launch(make_spec("b-throttled"))
    runs = moto.requests("RunInstances")
    assert [r.injected for r in runs] == ["RequestLimitExceeded", ""]
    assert {r.params["ClientToken"] for r in runs} == {"b-throttled"}
    assert [i.cloud_id for i in provider.list_instances()] == [inst.cloud_id]


def test_throttled_launch_surfaces_as_transient_and_a_retry_launches_once(
    provider: AwsProvider, moto: MotoServer
) -> None:
    moto.inject(throttle_fault(times=1))
    with pytest.raises(TransientProviderError) as err:
        provider.launch(make_spec("b-later"))
    assert err.value.code == "RequestLimitExceeded"
    assert moto.count("RunInstances") == 1  # launch_max_attempts=1: botocore did not retry
    inst = provider.launch(make_spec("b-later"))
    assert [i.cloud_id for i in provider.list_instances()] == [inst.cloud_id]


def test_unknown_instance_type_is_permanent(provider: AwsProvider) -> None:
    with pytest.raises(PermanentProviderError) as err:
        provider.launch(make_spec("b-bogus", make_offer("p99.bogus")))
    assert err.value.code == "InvalidInstanceType.NotFound" or err.value.code.startswith("InvalidInstanceType")


def test_unconfigured_region_and_zone(provider: AwsProvider, moto: MotoServer) -> None:
    with pytest.raises(PermanentProviderError) as err:
        provider.launch(make_spec("b-eu", make_offer(region="eu-west-1", zone="euw1-az1")))
    assert err.value.code == "RegionNotConfigured"
    with pytest.raises(CapacityError) as cap:
        provider.launch(make_spec("b-az", make_offer(zone="use1-az99")))
    assert cap.value.code == "NoSubnetForZone"
    assert moto.count("RunInstances") == 0


def test_tags_must_match_intent_and_cluster(provider: AwsProvider, moto: MotoServer) -> None:
    spec = make_spec("b-x")
    with pytest.raises(PermanentProviderError, match="intent id"):
        provider.launch(_with_tags(spec, TAG_ID, "b-y"))
    with pytest.raises(PermanentProviderError, match="cluster"):
        provider.launch(_with_tags(spec, TAG_CLUSTER, "other-site"))
    assert moto.count("RunInstances") == 0


def _with_tags(spec: Any, key: str, value: str) -> Any:
    from dataclasses import replace

    return replace(spec, tags={**spec.tags, key: value})


def test_wrong_cloud_offer(provider: AwsProvider) -> None:
    from dataclasses import replace

    with pytest.raises(PermanentProviderError):
        provider.launch(make_spec("b-az1", replace(make_offer(), cloud="azure")))


def test_supports(provider: AwsProvider) -> None:
    assert provider.supports(make_offer("p4d.24xlarge", zone="use1-az1"))
    assert not provider.supports(make_offer("p4d.24xlarge", zone="use1-az3"))  # not offered there
    assert not provider.supports(make_offer(region="eu-west-1", zone="euw1-az1"))
