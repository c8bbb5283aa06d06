"""Helpers for AWS tests (and the Provider contract suite): offers, launch specs, and settings
built from what moto's default VPCs hold after a reset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from burst.domain import (
    TAG_CLUSTER,
    TAG_EXPIRES,
    TAG_ID,
    TAG_OWNER,
    TAG_PURPOSE,
    TAG_TEAM,
    LaunchSpec,
    Market,
    Offer,
    Purpose,
)
from providers.aws import AwsRegionSettings, AwsSettings

REGIONS = ("us-east-1", "us-west-2")
SSM_AMI = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
CLUSTER = "site-a"
INSTANCE_PROFILE = "burst-node"


def default_subnets(endpoint_url: str, region: str) -> dict[str, str]:
    """AZ id -> subnet id of moto's default VPC in ``region``."""
    client = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
    return {s["AvailabilityZoneId"]: s["SubnetId"] for s in client.describe_subnets()["Subnets"]}


def default_security_group(endpoint_url: str, region: str) -> str:
    client = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
    groups = client.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])
    return str(groups["SecurityGroups"][0]["GroupId"])


def some_ami(endpoint_url: str, region: str) -> str:
    """An AMI id that exists in moto's ``region`` (the one SSM_AMI names; cheap to look up)."""
    ssm = boto3.client("ssm", region_name=region, endpoint_url=endpoint_url)
    return str(ssm.get_parameter(Name=SSM_AMI)["Parameter"]["Value"])


def settings_factory(endpoint_url: str) -> Callable[..., AwsSettings]:
    """Settings for us-east-1 (AMI through SSM, instance profile) and us-west-2 (explicit AMI).

    Keyword overrides go to AwsSettings; ``east``/``west`` dicts override region fields.
    """
    url = endpoint_url
    boto3.client("iam", region_name="us-east-1", endpoint_url=url).create_instance_profile(
        InstanceProfileName=INSTANCE_PROFILE
    )
    east_subnets = default_subnets(url, "us-east-1")
    west_subnets = default_subnets(url, "us-west-2")
    base = {
        "us-east-1": {
            "ami": SSM_AMI,
            "subnets": east_subnets,
            "security_group_ids": [default_security_group(url, "us-east-1")],
            "instance_profile": INSTANCE_PROFILE,
            "mirror_host": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "instance_types": ["p4d.24xlarge", "p5.48xlarge", "g5.xlarge", "g6.xlarge"],
        },
        "us-west-2": {
            "ami": some_ami(url, "us-west-2"),
            "subnets": west_subnets,
            "security_group_ids": [default_security_group(url, "us-west-2")],
            "mirror_host": "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        },
    }

    def make(*, east: dict[str, Any] | None = None, west: dict[str, Any] | None = None, **kw: Any) -> AwsSettings:
        regions = {
            "us-east-1": AwsRegionSettings(**{**base["us-east-1"], **(east or {})}),
            "us-west-2": AwsRegionSettings(**{**base["us-west-2"], **(west or {})}),
        }
        fields: dict[str, Any] = {
            "regions": regions,
            "endpoint_url": url,
            "harbor_host": "harbor.example.org",
            "user_data_template": "builtin:slurm",
            "template_vars": {"slurmctld_host": "ctld.example.org:6817", "munge_key_ssm_param": ""},
            "max_attempts": 2,
        }
        fields.update(kw)
        return AwsSettings(**fields)

    return make


def make_offer(
    instance_type: str = "p4d.24xlarge",
    *,
    region: str = "us-east-1",
    zone: str = "use1-az1",
    market: Market = Market.ON_DEMAND,
    gpu_model: str = "A100",
    gpus: int = 8,
    price: float = 32.77,
) -> Offer:
    return Offer(
        cloud="aws",
        instance_type=instance_type,
        region=region,
        zone=zone,
        gpu_model=gpu_model,
        gpu_count=gpus,
        gpu_memory_gib=40.0,
        price_per_hour=price,
        market=market,
    )


def make_spec(
    intent_id: str,
    offer: Offer | None = None,
    *,
    cluster: str = CLUSTER,
    purpose: Purpose = Purpose.OVERFLOW,
    **kw: Any,
) -> LaunchSpec:
    tags = {
        TAG_CLUSTER: cluster,
        TAG_ID: intent_id,
        TAG_PURPOSE: str(purpose),
        TAG_OWNER: "alice",
        TAG_TEAM: "vision",
        TAG_EXPIRES: "2026-12-01T00:00:00Z",
    }
    return LaunchSpec(
        intent_id=intent_id,
        offer=offer or make_offer(),
        purpose=purpose,
        tags=tags,
        owner="alice",
        team="vision",
        **kw,
    )
