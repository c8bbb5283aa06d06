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
from tests.support.moto_server import MotoServer, fake_aws_env


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for key, value in fake_aws_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE")
    moto_server.reset()
    return moto_server


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
