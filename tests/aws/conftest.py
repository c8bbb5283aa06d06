"""Fixtures for the AWS provider: one moto server per session (behind the fault middleware), reset
before every test, and settings built from what moto's default VPCs hold after the reset."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from providers.aws import AwsProvider, AwsSettings
from tests.aws.helpers import CLUSTER, settings_factory
from tests.support.moto_server import MotoServer, fresh_moto, serve_moto


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    yield from serve_moto()


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    return fresh_moto(moto_server, monkeypatch)


@pytest.fixture
def ec2(moto: MotoServer) -> Callable[[str], Any]:
    """A plain boto3 EC2 client per region (for test set-up and checks), single attempt."""

    def make(region: str = "us-east-1") -> Any:
        return boto3.client(
            "ec2",
            region_name=region,
            endpoint_url=moto.endpoint_url,
            config=Config(retries={"total_max_attempts": 1}),
        )

    return make


@pytest.fixture
def aws_settings(moto: MotoServer) -> Callable[..., AwsSettings]:
    """``aws_settings(**overrides)``: see :func:`tests.aws.helpers.settings_factory`. Call counts
    start from zero after this fixture's own set-up calls."""
    factory = settings_factory(moto.endpoint_url)
    moto.reset_counts()
    return factory


@pytest.fixture
def provider(aws_settings: Callable[..., AwsSettings]) -> AwsProvider:
    return AwsProvider(aws_settings(), cluster=CLUSTER)
