"""Helpers for Azure tests (and the Provider contract suite and bench/azure.py): settings for the
ARM stand-in, offers, launch specs, and a provider built on the real SDK against the stand-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from burst.domain import Market, Offer
from providers.azure import AzureProvider, AzureRegionSettings, AzureSettings
from tests.support.arm_standin import RESOURCE_GROUP, ArmStandin, StandinCredential, client_kwargs

CLUSTER = "site-a"
IMAGE = "canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBurstAdminKeyForTests burst@test"


def azure_settings(standin: ArmStandin, **kw: Any) -> AzureSettings:
    regions = {
        loc: AzureRegionSettings(subnet_id=standin.subnet_id(loc), image=IMAGE, mirror_host=f"burst{loc}.azurecr.io")
        for loc in standin.state.locations
    }
    fields: dict[str, Any] = {
        "subscription_id": standin.subscription,
        "resource_group": RESOURCE_GROUP,
        "regions": regions,
        "admin_ssh_public_key": SSH_KEY,
        "node_identity_id": standin.node_identity_id(),  # terraform/azure's node identity
        "base_url": kw.pop("base_url", None) or standin.endpoint,
        "lro_polling_interval_s": 0.0,
        "harbor_host": "harbor.example.org",
        "user_data_template": "builtin:slurm",
        "template_vars": {"slurmctld_host": "ctld.example.org:6817", "munge_key_ssm_param": ""},
    }
    fields.update(kw)
    return AzureSettings(**fields)


def make_provider(
    standin: ArmStandin,
    *,
    cluster: str = CLUSTER,
    clock: Callable[[], float] | None = None,
    settings: AzureSettings | None = None,
    **kw: Any,
) -> AzureProvider:
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return AzureProvider(
        settings or azure_settings(standin, **kw),
        cluster=cluster,
        credential=StandinCredential(standin.token),
        client_kwargs=client_kwargs(),
        **extra,
    )


def azure_offer(
    size: str = "Standard_NC24ads_A100_v4",
    *,
    region: str = "eastus",
    zone: str = "",
    market: Market = Market.ON_DEMAND,
    gpu_model: str = "A100",
    gpus: int = 1,
    price: float = 3.67,
) -> Offer:
    return Offer(
        cloud="azure",
        instance_type=size,
        region=region,
        zone=zone,
        gpu_model=gpu_model,
        gpu_count=gpus,
        gpu_memory_gib=80.0,
        price_per_hour=price,
        market=market,
    )


class ManualClock:
    """A clock the test moves by hand (the provider's refresh timer reads it)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
