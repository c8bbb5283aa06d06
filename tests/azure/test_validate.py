"""AzureProvider.validate(): the configuration is checked against ARM before any launch, with one
clear message per problem; the settings model is strict."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from burst.errors import ConfigError, PermanentProviderError
from providers.azure import AzureProvider, AzureRegionSettings, AzureSettings
from tests.azure.helpers import IMAGE, azure_settings, make_provider
from tests.support.arm_standin import ArmStandin, StandinCredential, client_kwargs


def _problem(standin: ArmStandin, **kw: Any) -> ConfigError:
    provider = make_provider(standin, **kw)
    with pytest.raises(ConfigError) as err:
        provider.validate()
    assert standin.count("PUT", "") == 0  # validation changes nothing
    return err.value


def _region(standin: ArmStandin, loc: str = "eastus", **kw: Any) -> AzureRegionSettings:
    fields: dict[str, Any] = {"subnet_id": standin.subnet_id(loc), "image": IMAGE}
    fields.update(kw)
    return AzureRegionSettings(**fields)


def test_a_good_configuration_passes(standin: ArmStandin) -> None:
    make_provider(standin).validate()
    make_provider(standin, regions={"eastus": _region(standin, vm_sizes=["Standard_ND96asr_v4"])}).validate(
        ["Standard_NC24ads_A100_v4"]
    )


def test_unknown_subscription(standin: ArmStandin) -> None:
    err = _problem(standin, subscription_id="11111111-2222-3333-4444-555555555555")
    assert err.where == "azure.subscription_id" and "not found" in err.message


def test_unknown_resource_group(standin: ArmStandin) -> None:
    err = _problem(standin, resource_group="no-such-rg")
    assert err.where == "azure.resource_group" and "'no-such-rg' not found" in err.message


def test_missing_subnet_and_image_are_each_named(standin: ArmStandin) -> None:
    bad_subnet = standin.subnet_id("eastus").replace("default", "gone")
    err = _problem(standin, regions={
        "eastus": _region(standin, subnet_id=bad_subnet),
        "westus2": _region(standin, "westus2", image="canonical:no-such-offer:22_04-lts-gen2:latest"),
    })
    assert err.where == "azure.regions.eastus.subnet_id" and bad_subnet in err.message
    assert "azure.regions.westus2.image: marketplace image canonical:no-such-offer:22_04-lts-gen2 not found" in err.message


def test_image_version_and_image_id(standin: ArmStandin) -> None:
    err = _problem(standin, regions={"eastus": _region(standin, image=IMAGE.replace("latest", "1.2.3"))})
    assert err.where == "azure.regions.eastus.image" and "version 1.2.3" in err.message
    gallery = f"/subscriptions/{standin.subscription}/resourceGroups/burst-rg/providers/Microsoft.Compute/galleries/g/images/gpu/versions/1.0.0"
    err = _problem(standin, regions={"eastus": _region(standin, image=gallery)})
    assert err.where == "azure.regions.eastus.image" and gallery in err.message
    standin.add_resource(gallery)
    make_provider(standin, regions={"eastus": _region(standin, image=gallery)}).validate()


def test_unknown_node_identity(standin: ArmStandin) -> None:
    gone = standin.node_identity_id("no-such-identity")
    err = _problem(standin, node_identity_id=gone)
    assert err.where == "azure.node_identity_id" and f"user-assigned identity {gone} not found" in err.message


def test_unknown_region(standin: ArmStandin) -> None:
    subnet = standin.subnet_id("eastus")
    err = _problem(standin, regions={"eastus": _region(standin), "marsnorth": _region(standin, subnet_id=subnet)})
    assert err.where == "azure.regions.marsnorth" and "unknown Azure region" in err.message


def test_restricted_or_unknown_sizes(standin: ArmStandin) -> None:
    standin.restrict("Standard_ND96asr_v4", "eastus")
    err = _problem(standin, regions={"eastus": _region(standin, vm_sizes=["Standard_ND96asr_v4", "Standard_XX1"])})
    assert err.where == "azure.regions.eastus.vm_sizes"
    assert "Standard_ND96asr_v4 is restricted for this subscription in eastus (NotAvailableForSubscription)" in err.message
    assert "Standard_XX1 is not offered in eastus" in err.message


def test_missing_ssh_key_and_bad_template(standin: ArmStandin) -> None:
    err = _problem(standin, admin_ssh_public_key="", user_data_template="#!/bin/sh\necho $nonsense\n")
    assert err.where == "azure.admin_ssh_public_key"
    assert "azure.user_data_template: unknown variable $nonsense" in err.message


def test_auth_failure_is_not_a_config_error(standin: ArmStandin) -> None:
    provider = AzureProvider(azure_settings(standin), cluster="c", credential=StandinCredential("expired"),
                             client_kwargs=client_kwargs())
    with pytest.raises(PermanentProviderError) as err:
        provider.validate()
    assert not isinstance(err.value, ConfigError) and "InvalidAuthenticationToken" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("subscription_id", "not-a-uuid", "must be a subscription id"),
        ("resource_group", "bad/rg", "resource group name"),
        ("regions", {}, "at least one region"),
        ("regions", {"East US": {"subnet_id": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/s", "image": IMAGE}}, "location name"),
        ("regions", {"eastus": {"subnet_id": "subnet-123", "image": IMAGE}}, "subnet resource id"),
        ("regions", {"eastus": {"subnet_id": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/s", "image": "ubuntu"}}, "publisher:offer:sku:version"),
        ("template_vars", {"cluster": "x"}, "may not redefine"),
        ("node_identity_id", "/subscriptions/x/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/v",
         "user-assigned identity resource id"),
        ("unknown_key", 1, "Extra inputs are not permitted"),
    ],
)
def test_settings_are_strict(field: str, value: Any, text: str) -> None:
    base: dict[str, Any] = {
        "subscription_id": "00000000-0000-0000-0000-0000000000a1",
        "resource_group": "rg",
        "regions": {"eastus": {"subnet_id": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/s", "image": IMAGE}},
    }
    base[field] = value
    with pytest.raises(ValidationError) as err:
        AzureSettings.model_validate(base)
    assert text in str(err.value)


def test_production_credential_is_default_azure_credential(standin: ArmStandin) -> None:
    from azure.identity import DefaultAzureCredential

    provider = AzureProvider(azure_settings(standin), cluster="c")
    assert isinstance(provider.client._config.credential, DefaultAzureCredential)
    assert provider.client._config.retry_policy.total_retries == 0  # no hidden retries or sleeps
