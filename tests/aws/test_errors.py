"""providers/errors.py, table-driven over real botocore exceptions.

Every ClientError below is produced by a real boto3 call through the fault middleware in front of
moto, so the code, HTTP status and message went through botocore's own XML error parser.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, NoCredentialsError

from burst.errors import (
    CapacityError,
    NotFound,
    PermanentProviderError,
    ProviderError,
    QuotaError,
    TransientProviderError,
)
from providers.errors import AWS_CODES, CodeTable, map_aws_error, map_provider_error
from tests.support.moto_server import Fault, MotoServer

OFFER_KEY = "aws/us-east-1/use1-az1/p5.48xlarge/on-demand"

CASES: list[tuple[str, int, type[ProviderError]]] = [
    # capacity: the offer cools down, the policy picks the next offer
    ("InsufficientInstanceCapacity", 500, CapacityError),
    ("InsufficientHostCapacity", 500, CapacityError),
    ("InsufficientCapacity", 500, CapacityError),
    ("InsufficientReservedInstanceCapacity", 500, CapacityError),
    ("Unsupported", 400, CapacityError),
    ("SpotMaxPriceTooLow", 400, CapacityError),
    ("InsufficientFreeAddressesInSubnet", 400, CapacityError),
    # quota: a capacity error with a longer cool-down
    ("MaxSpotInstanceCountExceeded", 400, QuotaError),
    ("VcpuLimitExceeded", 400, QuotaError),
    ("InstanceLimitExceeded", 400, QuotaError),
    # transient: retried later
    ("RequestLimitExceeded", 503, TransientProviderError),
    ("Throttling", 400, TransientProviderError),
    ("InternalError", 500, TransientProviderError),
    ("ServiceUnavailable", 503, TransientProviderError),
    ("Unavailable", 503, TransientProviderError),
    ("SomethingNewAndBroken", 502, TransientProviderError),  # unknown code, 5xx
    # permanent: alert admins, stop using the provider
    ("AuthFailure", 401, PermanentProviderError),
    ("UnauthorizedOperation", 403, PermanentProviderError),
    ("InvalidClientTokenId", 403, PermanentProviderError),
    ("SignatureDoesNotMatch", 403, PermanentProviderError),
    ("OptInRequired", 401, PermanentProviderError),
    ("InvalidParameterValue", 400, PermanentProviderError),
    ("InvalidParameterCombination", 400, PermanentProviderError),
    ("InvalidAMIID.NotFound", 400, PermanentProviderError),
    ("InvalidAMIID.Malformed", 400, PermanentProviderError),
    ("InvalidSubnetID.NotFound", 400, PermanentProviderError),
    ("InvalidGroup.NotFound", 400, PermanentProviderError),
    ("InvalidKeyPair.NotFound", 400, PermanentProviderError),
    ("IdempotentParameterMismatch", 400, PermanentProviderError),
    ("SomethingNewAndRefused", 400, PermanentProviderError),  # unknown code, 4xx
    # gone: success when deleting
    ("InvalidInstanceID.NotFound", 400, NotFound),
]


@pytest.fixture
def single_attempt(moto: MotoServer) -> Callable[..., Any]:
    def make(region: str = "us-east-1", **cfg: Any) -> Any:
        return boto3.client(
            "ec2",
            region_name=region,
            endpoint_url=moto.endpoint_url,
            config=Config(retries={"total_max_attempts": 1}, **cfg),
        )

    return make


def client_error_for(moto: MotoServer, client: Any, code: str, status: int) -> ClientError:
    moto.inject(Fault(code=code, status=status, message=f"{code} (test)", times=1))
    with pytest.raises(ClientError) as err:
        client.run_instances(ImageId="ami-12c6146b", InstanceType="p5.48xlarge", MinCount=1, MaxCount=1)
    return err.value


@pytest.mark.parametrize(("code", "status", "expected"), CASES, ids=[c[0] for c in CASES])
def test_client_error_mapping(
    moto: MotoServer, single_attempt: Callable[..., Any], code: str, status: int, expected: type[ProviderError]
) -> None:
    exc = client_error_for(moto, single_attempt(), code, status)
    assert exc.response["Error"]["Code"] == code
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == status
    mapped = map_aws_error(exc, offer_key=OFFER_KEY)
    assert type(mapped) is expected
    assert mapped.code == code and mapped.provider == "aws" and mapped.offer_key == OFFER_KEY
    assert code in str(mapped) and f"HTTP {status}" in str(mapped)
    assert "testing" not in str(mapped)  # never the credentials


def test_real_moto_errors_map(moto: MotoServer, single_attempt: Callable[..., Any]) -> None:
    """Errors moto itself produces (no injection)."""
    client = single_attempt()
    with pytest.raises(ClientError) as err:
        client.terminate_instances(InstanceIds=["i-0123456789abcdef0"])
    assert isinstance(map_aws_error(err.value), NotFound)
    with pytest.raises(ClientError) as err:
        client.run_instances(ImageId="ami-12c6146b", InstanceType="p99.bogus", MinCount=1, MaxCount=1)
    assert isinstance(map_aws_error(err.value), PermanentProviderError)
    with pytest.raises(ClientError) as err:
        client.describe_images(ImageIds=["ami-00000000"])
    assert isinstance(map_aws_error(err.value), PermanentProviderError)


def test_unparseable_answer_is_transient(moto: MotoServer, single_attempt: Callable[..., Any]) -> None:
    moto.inject(Fault(status=500, raw_body=b"<!doctype html><title>500</title>", times=1))
    with pytest.raises(Exception) as err:
        single_attempt().run_instances(ImageId="ami-12c6146b", InstanceType="p5.48xlarge", MinCount=1, MaxCount=1)
    assert type(err.value).__name__ == "ResponseParserError"
    assert isinstance(map_aws_error(err.value), TransientProviderError)


def test_read_timeout_is_transient(moto: MotoServer, single_attempt: Callable[..., Any]) -> None:
    moto.inject(Fault(code="InternalError", delay_s=1.0, times=1))
    with pytest.raises(Exception) as err:
        single_attempt(read_timeout=0.2).run_instances(
            ImageId="ami-12c6146b", InstanceType="p5.48xlarge", MinCount=1, MaxCount=1
        )
    assert type(err.value).__name__ == "ReadTimeoutError"
    assert isinstance(map_aws_error(err.value), TransientProviderError)


@pytest.fixture
def closed_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port


def test_endpoint_connection_error_is_transient(moto: MotoServer, closed_port: int) -> None:
    client = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=0.5),
    )
    with pytest.raises(Exception) as err:
        client.describe_instances()
    assert type(err.value).__name__ == "EndpointConnectionError"
    assert isinstance(map_aws_error(err.value), TransientProviderError)


def test_connection_closed_is_transient() -> None:
    exc = ConnectionClosedError(endpoint_url="https://ec2.us-east-1.amazonaws.com/")
    assert isinstance(map_aws_error(exc), TransientProviderError)


def test_no_credentials_is_permanent(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client("ec2", region_name="us-east-1", endpoint_url=moto.endpoint_url)
    with pytest.raises(NoCredentialsError) as err:
        client.describe_instances()
    assert isinstance(map_aws_error(err.value), PermanentProviderError)


def test_provider_errors_pass_through_and_others_are_typed() -> None:
    original = CapacityError("x", provider="aws", code="InsufficientInstanceCapacity")
    assert map_aws_error(original) is original
    assert isinstance(map_aws_error(TimeoutError("slow")), TransientProviderError)
    assert isinstance(map_aws_error(RuntimeError("bug")), PermanentProviderError)


def test_dispatch_reaches_azure() -> None:
    assert isinstance(map_provider_error(TimeoutError(), provider="aws"), TransientProviderError)
    # issue 11: Azure has its mapping now (tests/azure/test_errors.py covers it)
    assert isinstance(map_provider_error(TimeoutError(), provider="azure"), TransientProviderError)
    assert isinstance(map_provider_error(RuntimeError(), provider="azure"), PermanentProviderError)
    with pytest.raises(ValueError):
        map_provider_error(RuntimeError(), provider="gcp")


def test_code_table_prefixes_and_order() -> None:
    table = CodeTable.build((NotFound, ["X.NotFound"]), (PermanentProviderError, ["X.*"]))
    assert table.classify("X.NotFound") is NotFound
    assert table.classify("X.Malformed") is PermanentProviderError
    assert table.classify("Y") is None
    assert AWS_CODES.classify("InvalidInstanceID.NotFound") is NotFound
    assert AWS_CODES.classify("InvalidInstanceID.Malformed") is PermanentProviderError
