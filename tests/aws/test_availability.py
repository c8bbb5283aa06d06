"""AwsProvider.availability(): per-AZ offerings from EC2, cached with an injected clock."""

from __future__ import annotations

from collections.abc import Callable

from providers.aws import AwsProvider, AwsSettings
from tests.aws.helpers import CLUSTER
from tests.support.moto_server import MotoServer


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_availability_by_az_id_cached_with_ttl(aws_settings: Callable[..., AwsSettings], moto: MotoServer) -> None:
    clock = FakeClock()
    provider = AwsProvider(aws_settings(availability_ttl_s=600), cluster=CLUSTER, clock=clock)
    avail = provider.availability("us-east-1")
    assert set(avail) == {"p4d.24xlarge", "p5.48xlarge", "g5.xlarge", "g6.xlarge"}  # the region's list
    assert avail["p4d.24xlarge"] >= {"use1-az1", "use1-az2"}
    assert "use1-az3" not in avail["p4d.24xlarge"]
    (req,) = moto.requests("DescribeInstanceTypeOfferings")
    assert req.params["LocationType"] == "availability-zone-id"

    avail["p4d.24xlarge"].add("tampered")  # callers get a copy
    clock.t += 599
    assert "tampered" not in provider.availability("us-east-1")["p4d.24xlarge"]
    assert moto.count("DescribeInstanceTypeOfferings") == 1
    clock.t += 1
    provider.availability("us-east-1")
    assert moto.count("DescribeInstanceTypeOfferings") == 2


def test_availability_without_type_list_is_paginated(aws_settings: Callable[..., AwsSettings], moto: MotoServer) -> None:
    provider = AwsProvider(aws_settings(), cluster=CLUSTER)
    avail = provider.availability("us-west-2")  # no instance_types configured: every type
    assert len(avail) > 100
    assert "p4d.24xlarge" in avail and all(z.startswith("usw2-az") for z in avail["p4d.24xlarge"])
    assert moto.count("DescribeInstanceTypeOfferings") >= 1
