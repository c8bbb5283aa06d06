"""Settings of the Azure provider (:class:`AzureSettings`), strict pydantic models: what
``clouds.azure.settings`` in burst's config holds. Credentials are not settings: they come from
``DefaultAzureCredential`` (see :mod:`providers.azure`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from providers.bootstrap import SAFE_VALUE, USER_DATA_VARIABLES, known_template

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SUBNET_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+$", re.I)
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
_IDENTITY_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$", re.I
)
# Secrets the builtin templates read at boot, empty unless azure.template_vars sets them: on Azure
# the Key Vault secret URLs (read with the VM's managed identity); the SSM names are AWS's and stay
# empty here (the shared template still names them; see providers/templates/).
TEMPLATE_DEFAULTS: Mapping[str, str] = {
    "munge_key_secret_url": "",
    "bootstrap_token_secret_url": "",
    "munge_key_ssm_param": "",
    "bootstrap_token_ssm_param": "",
}


class AzureRegionSettings(BaseModel):
    """One Azure region (location) burst may launch in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnet_id: str = Field(description="ARM id of the subnet the VMs' NICs join")
    image: str = Field(description="marketplace URN 'publisher:offer:sku:version', or an image resource id")
    mirror_host: str = Field(default="", description="registry mirror for this region (ACR; user data)")
    vm_sizes: list[str] = Field(default_factory=list, description="sizes the catalog may offer here; checked by validate()")

    @field_validator("subnet_id")
    @classmethod
    def _subnet_form(cls, v: str) -> str:
        if not _SUBNET_ID.match(v):
            raise ValueError("must be a subnet resource id: /subscriptions/<id>/resourceGroups/<rg>/providers/"
                             "Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>")
        return v

    @field_validator("image")
    @classmethod
    def _image_form(cls, v: str) -> str:
        if v.startswith("/subscriptions/"):
            return v
        parts = v.split(":")
        if len(parts) != 4 or not all(parts):
            raise ValueError("must be 'publisher:offer:sku:version' (version may be 'latest') or an image resource id")
        return v


class AzureSettings(BaseModel):
    """Everything :class:`AzureProvider` needs besides credentials (DefaultAzureCredential)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: str
    resource_group: str
    regions: dict[str, AzureRegionSettings]
    admin_username: str = Field(default="burst", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    admin_ssh_public_key: str = Field(default="", description="OpenSSH public key for the admin user (required to launch)")
    os_disk_gib: int = Field(default=200, ge=30, le=4095)
    os_disk_type: Literal["Premium_LRS", "StandardSSD_LRS", "Standard_LRS", "Premium_ZRS", "StandardSSD_ZRS"] = "Premium_LRS"
    accelerated_networking: bool = True
    proximity_placement_groups: bool = Field(default=True, description="gangs (ND InfiniBand sizes) in one PPG")
    allow_spot: bool = True
    spot_max_price: Literal["on-demand", "catalog"] = Field(
        default="on-demand", description="'on-demand': maxPrice -1 (never evicted for price); 'catalog': offer price x factor"
    )
    spot_max_price_factor: float = Field(default=1.0, gt=0, le=10)
    sku_refresh_s: float = Field(default=900.0, ge=0, description="how often SKU restrictions and quota are re-read")
    network_api_version: str = Field(default="2022-11-01", pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")
    lro_polling_interval_s: float = Field(default=5.0, ge=0, description="pause between LRO polls without Retry-After")
    launch_wait_s: float = Field(
        default=180.0, ge=0, description="how long launch waits for the create to finish before reporting it pending"
    )
    connection_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    user_data_template: Annotated[str, AfterValidator(known_template)] = Field(
        default="", description="path, builtin:slurm|builtin:k8s, or inline text"
    )
    template_vars: dict[str, str] = Field(
        default_factory=dict,
        description="extra template variables: slurmctld_host, munge_key_secret_url (Key Vault secret URL), "
        "k8s_api_endpoint, k8s_ca_cert_hash, bootstrap_token_secret_url",
    )
    harbor_host: str = ""
    node_identity_id: str = Field(
        default="",
        description="ARM id of the user-assigned managed identity every VM gets (terraform/azure's "
        "<cluster>-burst-node: AcrPull on the mirror, read of the join secret in Key Vault); "
        "empty: VMs get no identity, so nodes can neither pull from ACR nor read a Key Vault secret",
    )
    node_name_prefix: str = ""
    base_url: str | None = Field(default=None, description="ARM endpoint; default the public cloud's (tests: the stand-in)")

    @field_validator("subscription_id")
    @classmethod
    def _uuid(cls, v: str) -> str:
        if not _UUID.match(v):
            raise ValueError("must be a subscription id (a UUID)")
        return v

    @field_validator("resource_group")
    @classmethod
    def _rg(cls, v: str) -> str:
        if not _RESOURCE_GROUP.match(v) or v.endswith("."):
            raise ValueError("must be a resource group name (1-90 letters, digits, '-', '_', '.', '(' or ')')")
        return v

    @field_validator("node_identity_id")
    @classmethod
    def _identity_form(cls, v: str) -> str:
        if v and not _IDENTITY_ID.match(v):
            raise ValueError("must be a user-assigned identity resource id: /subscriptions/<id>/resourceGroups/<rg>/"
                             "providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>")
        return v

    @field_validator("regions")
    @classmethod
    def _some_region(cls, v: dict[str, AzureRegionSettings]) -> dict[str, AzureRegionSettings]:
        if not v:
            raise ValueError("at least one region is needed")
        for name in v:
            if not re.fullmatch(r"[a-z0-9]+", name):
                raise ValueError(f"{name!r} is not an Azure location name (e.g. eastus, westus2)")
        return v

    @model_validator(mode="after")
    def _template_vars_ok(self) -> AzureSettings:
        clash = sorted(set(self.template_vars) & set(USER_DATA_VARIABLES))
        if clash:
            raise ValueError(f"template_vars may not redefine burst's variables: {', '.join(clash)}")
        for key, value in self.template_vars.items():
            if not SAFE_VALUE.fullmatch(value):
                raise ValueError(f"template_vars.{key}: value has characters unsafe in a shell script")
        return self


