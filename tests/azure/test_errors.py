"""ARM errors reach burst as typed errors: every class, through the real SDK and the stand-in."""

from __future__ import annotations

import socket

import pytest

from burst.domain import CloudState, Market
from burst.errors import (
    CapacityError,
    NotFound,
    PermanentProviderError,
    ProviderError,
    QuotaError,
    TransientProviderError,
)
from providers.errors import AZURE_CODES, map_azure_error
from tests.aws.helpers import make_spec
from tests.azure.helpers import azure_offer, make_provider
from tests.support.arm_standin import ArmStandin, StandinCredential, client_kwargs

NC24 = "Standard_NC24ads_A100_v4"


@pytest.mark.parametrize(
    ("code", "kw", "expected"),
    [
        ("SkuNotAvailable", {}, CapacityError),
        ("AllocationFailed", {}, CapacityError),
        ("ZonalAllocationFailed", {}, CapacityError),
        ("OverconstrainedAllocationRequest", {}, CapacityError),
        ("QuotaExceeded", {}, QuotaError),
        ("OperationNotAllowed", {"message": "Operation could not be completed as it results in exceeding approved "
                                            "standardNCADSA100v4Family Cores quota."}, QuotaError),
        ("OperationNotAllowed", {"message": "The VM is being deleted."}, TransientProviderError),
        ("OperationNotAllowed", {"message": "The subscription is disabled."}, PermanentProviderError),
        ("TooManyRequests", {"status": 429, "retry_after": 3}, TransientProviderError),
        ("InternalServerError", {"status": 500}, TransientProviderError),
        ("ServiceUnavailable", {"status": 503}, TransientProviderError),
        ("SomethingNew", {"status": 502}, TransientProviderError),
        ("AuthorizationFailed", {"status": 403}, PermanentProviderError),
        ("InvalidParameter", {"status": 400}, PermanentProviderError),
        ("SomethingNew", {"status": 400}, PermanentProviderError),
    ],
)
def test_launch_errors_are_typed(standin: ArmStandin, code: str, kw: dict[str, object], expected: type[ProviderError]) -> None:
    provider = make_provider(standin)
    standin.fail("put_vm", code, **kw)
    with pytest.raises(ProviderError) as err:
        provider.launch(make_spec("b-err-1", azure_offer()))
    assert type(err.value) is expected, err.value
    assert err.value.code == code and err.value.provider == "azure"
    assert err.value.offer_key == azure_offer().key
    assert code in str(err.value)
    if code == "TooManyRequests":
        assert err.value.retry_after == 3
    # nothing is left behind: a failed create's VM is deleted, and its quota given back
    assert standin.vms() == []
    assert standin.usage("eastus", "cores")[0] == 0
    # the next launch of the same intent works (the fault was one-shot)
    assert provider.launch(make_spec("b-err-1", azure_offer())).state is CloudState.RUNNING


@pytest.mark.parametrize("shape", ["async", "location"])
def test_a_failed_operation_is_capacity_in_either_lro_shape(standin: ArmStandin, shape: str) -> None:
    standin.set_lro(shape, polls=2)
    standin.fail("put_vm", "AllocationFailed", polls=2)
    with pytest.raises(CapacityError) as err:
        make_provider(standin).launch(make_spec("b-alloc", azure_offer()))
    assert err.value.code == "AllocationFailed" and not isinstance(err.value, QuotaError)
    standin.complete_operations()
    assert standin.vms() == []


def test_quota_the_stand_in_enforces_is_a_quota_error(standin: ArmStandin) -> None:
    # the provider's own view says there is room (refreshed before the limit dropped)...
    provider = make_provider(standin)
    assert provider.supports(azure_offer())
    standin.set_quota("eastus", "standardNCADSA100v4Family", 10)
    # ...ARM refuses with 409 OperationNotAllowed and a quota message: a QuotaError
    with pytest.raises(QuotaError) as err:
        provider.launch(make_spec("b-quota", azure_offer()))
    assert err.value.code == "OperationNotAllowed"
    assert standin.count("PUT", "/virtualMachines/") == 1


def test_bad_token_is_permanent(standin: ArmStandin) -> None:
    from providers.azure import AzureProvider
    from tests.azure.helpers import azure_settings

    provider = AzureProvider(azure_settings(standin), cluster="c", credential=StandinCredential("wrong"),
                             client_kwargs=client_kwargs())
    with pytest.raises(PermanentProviderError) as err:
        provider.list_instances()
    assert err.value.code == "InvalidAuthenticationToken"


def test_unreachable_arm_is_transient(standin: ArmStandin) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = make_provider(standin, base_url=f"http://127.0.0.1:{port}", connection_timeout=2.0)
    with pytest.raises(TransientProviderError):
        provider.list_instances()


def test_list_and_delete_errors(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    inst = provider.launch(make_spec("b-x", azure_offer()))
    standin.throttle("list_vms", retry_after=11)
    with pytest.raises(TransientProviderError) as err:
        provider.list_instances()
    assert err.value.retry_after == 11
    standin.fail("delete_vm", "InternalServerError")
    with pytest.raises(TransientProviderError):
        provider.terminate([inst.cloud_id])
    provider.terminate([inst.cloud_id])  # tried again: fine
    assert standin.vm("b-x") is None


def test_spot_quota_is_its_own_row(standin: ArmStandin) -> None:
    standin.set_quota("eastus", "lowPriorityCores", 24)
    provider = make_provider(standin)
    spot = azure_offer(market=Market.SPOT)
    provider.launch(make_spec("b-s1", spot))
    assert not provider.supports(spot) and provider.supports(azure_offer())
    with pytest.raises(QuotaError):
        provider.launch(make_spec("b-s2", spot))


def test_mapping_table_and_pass_through() -> None:
    assert AZURE_CODES.classify("ResourceNotFound") is NotFound
    assert AZURE_CODES.classify("InvalidAuthenticationTokenTenant") is PermanentProviderError
    original = CapacityError("x", provider="azure", code="SkuNotAvailable")
    assert map_azure_error(original) is original
    assert isinstance(map_azure_error(TimeoutError("slow")), TransientProviderError)
    assert isinstance(map_azure_error(RuntimeError("bug")), PermanentProviderError)
    from azure.core.exceptions import ClientAuthenticationError

    assert isinstance(map_azure_error(ClientAuthenticationError("no credential")), PermanentProviderError)
