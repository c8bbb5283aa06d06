"""Offers the provider lets through: SKU restrictions and vCPU quota from ARM, refreshed on the
injected clock, with this provider's own launches counted in between."""

from __future__ import annotations

import pytest

from burst.domain import Market
from burst.errors import CapacityError, QuotaError
from tests.aws.helpers import make_spec
from tests.azure.helpers import ManualClock, azure_offer, make_provider
from tests.support.arm_standin import ArmStandin

NC24 = "Standard_NC24ads_A100_v4"
FAMILY = "standardNCADSA100v4Family"


def test_restricted_sizes_are_not_offered_and_not_launched(standin: ArmStandin) -> None:
    standin.restrict(NC24, "eastus")
    provider = make_provider(standin)
    east, west = azure_offer(NC24), azure_offer(NC24, region="westus2")
    assert not provider.supports(east) and provider.supports(west)
    assert NC24 not in provider.availability("eastus") and NC24 in provider.availability("westus2")
    assert provider.filter_offers([east, west]) == [west]
    with pytest.raises(CapacityError) as err:
        provider.launch(make_spec("b-r1", east))
    assert err.value.code == "SkuNotAvailable" and "restricted" in str(err.value)
    assert standin.count("PUT", "/virtualMachines/") == 0  # refused without a call


def test_zone_restrictions(standin: ArmStandin) -> None:
    standin.restrict(NC24, "eastus", zones=["2"])
    provider = make_provider(standin)
    assert provider.availability("eastus")[NC24] == {"1", "3"}
    assert provider.supports(azure_offer(NC24, zone="1"))
    assert not provider.supports(azure_offer(NC24, zone="2"))
    assert provider.supports(azure_offer(NC24))  # regional: Azure places it in an allowed zone
    provider.launch(make_spec("b-z1", azure_offer(NC24, zone="1")))
    assert standin.vm("b-z1")["zones"] == ["1"]  # type: ignore[index]


def test_sizes_not_in_the_region_or_not_configured_are_refused(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    assert not provider.supports(azure_offer("Standard_NC999_v9"))
    assert not provider.supports(azure_offer(region="northeurope"))
    assert provider.supports(azure_offer(market=Market.SPOT))
    no_spot = make_provider(standin, allow_spot=False)
    assert not no_spot.supports(azure_offer(market=Market.SPOT))


def test_family_quota_counts_launches_since_the_refresh(standin: ArmStandin) -> None:
    standin.set_quota("eastus", FAMILY, 48)  # two NC24ads (24 vCPUs each)
    clock = ManualClock()
    provider = make_provider(standin, clock=clock)
    offer = azure_offer(NC24)
    assert provider.supports(offer)
    provider.launch(make_spec("b-q1", offer))
    assert provider.supports(offer)
    provider.launch(make_spec("b-q2", offer))
    # ARM's usage says 0 used until the next refresh; the provider counted its own launches
    assert not provider.supports(offer)
    assert provider.supports(azure_offer(NC24, region="westus2"))
    with pytest.raises(QuotaError) as err:
        provider.launch(make_spec("b-q3", offer))
    assert err.value.code == "QuotaExhausted" and FAMILY in str(err.value)
    assert standin.count("PUT", "/virtualMachines/") == 2
    assert standin.count("GET", "/locations/eastus/usages$") == 1  # one read so far


def test_quota_and_restrictions_refresh_on_the_clock_only(standin: ArmStandin) -> None:
    clock = ManualClock()
    provider = make_provider(standin, clock=clock, sku_refresh_s=600.0)
    offer = azure_offer(NC24)
    inst = provider.launch(make_spec("b-t1", offer))
    standin.set_quota("eastus", FAMILY, 24)  # now full (the VM holds 24)
    clock.now += 599
    assert provider.supports(offer)  # not re-read yet: the view is from before
    clock.now += 1
    assert not provider.supports(offer)  # re-read: ARM's usage counts the VM, no room
    provider.terminate([inst.cloud_id])
    assert not provider.supports(offer)
    clock.now += 600
    assert provider.supports(offer)  # the VM is gone and its vCPUs are free again
    assert standin.count("GET", "/locations/eastus/usages$") == 3
    standin.restrict(NC24, "eastus")
    clock.now += 600
    assert not provider.supports(offer)


def test_regional_quota_applies_to_every_family(standin: ArmStandin) -> None:
    standin.set_quota("westus2", "cores", 30)
    provider = make_provider(standin)
    provider.launch(make_spec("b-c1", azure_offer("Standard_NC4as_T4_v3", region="westus2", gpu_model="T4")))
    assert provider.supports(azure_offer("Standard_NC24ads_A100_v4", region="westus2"))
    assert not provider.supports(azure_offer("Standard_NC48ads_A100_v4", region="westus2", gpus=2))


def test_launch_refuses_what_supports_refuses_before_any_call(standin: ArmStandin) -> None:
    standin.set_quota("eastus", FAMILY, 0)
    provider = make_provider(standin)
    requests_before = len(standin.requests)
    with pytest.raises(QuotaError):
        provider.launch(make_spec("b-none", azure_offer(NC24)))
    # only the SKU and usage reads; no VM GET, no PUT
    new = standin.requests[requests_before:]
    assert [m for m, _ in new] == ["GET", "GET"]
