"""AzureProvider.validate(): the configuration checked against ARM before any launch. Split out
of :mod:`providers.azure` to keep that module about launching; functions take the provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from burst.errors import ConfigError, NotFound, PermanentProviderError, ProviderError
from providers.bootstrap import USER_DATA_VARIABLES, render_user_data
from providers.errors import map_azure_error

if TYPE_CHECKING:
    from providers.azure import AzureProvider

RESOURCE_API_VERSION = "2021-04-01"  # subscriptions and resource groups (GET only)
IDENTITY_API_VERSION = "2023-01-31"  # user-assigned identities (GET only)
IMAGE_API_VERSION = "2023-07-03"  # gallery image versions / managed images by id (GET only)
TEMPLATE_SETTING = "azure.user_data_template"
MAX_CUSTOM_DATA_BYTES = 64 * 1024  # Azure's limit on customData, before base64


def validate_into(self: AzureProvider, problems: list[tuple[str, str]], extra_types: list[str]) -> None:
    """Append (setting, problem) for every configuration mistake ARM shows; see AzureProvider.validate."""
    s = self.settings
    if not s.admin_ssh_public_key:
        problems.append(("azure.admin_ssh_public_key", "an OpenSSH public key is needed (Linux VMs without password)"))
    if s.user_data_template:
        try:
            dummy = {k: "x" for k in USER_DATA_VARIABLES} | self.template_vars()
            rendered = render_user_data(self.template_text(), dummy, where=TEMPLATE_SETTING)
            if len(rendered.encode()) > MAX_CUSTOM_DATA_BYTES:
                problems.append((TEMPLATE_SETTING, f"renders to more than {MAX_CUSTOM_DATA_BYTES} bytes"))
        except ConfigError as e:
            problems.append((e.where, e.message))
    sub = f"/subscriptions/{s.subscription_id}"
    if self._raw_get(sub, RESOURCE_API_VERSION) == 404:
        problems.append(("azure.subscription_id", f"subscription {s.subscription_id} not found (or not visible to this identity)"))
        return  # nothing below can be checked
    if self._raw_get(f"{sub}/resourceGroups/{s.resource_group}", RESOURCE_API_VERSION) == 404:
        problems.append(("azure.resource_group", f"resource group {s.resource_group!r} not found in subscription {s.subscription_id}"))
        return
    if s.node_identity_id and self._raw_get(s.node_identity_id, IDENTITY_API_VERSION) == 404:
        problems.append(("azure.node_identity_id", f"user-assigned identity {s.node_identity_id} not found"))
    for region, cfg in s.regions.items():
        where = f"azure.regions.{region}"
        try:
            view = self.view(region, refresh=True)
        except ProviderError as e:
            if isinstance(e, (PermanentProviderError, NotFound)) and e.code in (
                "NoRegisteredProviderFound", "LocationNotAvailableForResourceType", "InvalidParameter", "NotFound"
            ):
                problems.append((where, f"unknown Azure region {region!r} ({e.code})"))
                continue
            raise
        if self._raw_get(cfg.subnet_id, s.network_api_version) == 404:
            problems.append((f"{where}.subnet_id", f"subnet {cfg.subnet_id} not found"))
        problem = image_problem(self, region, cfg.image)
        if problem:
            problems.append((f"{where}.image", problem))
        for size in dict.fromkeys([*cfg.vm_sizes, *extra_types]):
            sku = view.sku(size)
            if sku is None:
                problems.append((f"{where}.vm_sizes", f"{size} is not offered in {region}"))
            elif sku.restricted:
                problems.append((f"{where}.vm_sizes", f"{size} is restricted for this subscription in {region} ({sku.reason})"))

def image_problem(self: AzureProvider, region: str, image: str) -> str:
    """What is wrong with ``image`` in ``region`` ("" when it exists)."""
    from azure.core.exceptions import HttpResponseError

    if image.startswith("/subscriptions/"):
        return "" if self._raw_get(image, IMAGE_API_VERSION) != 404 else f"image {image} not found"
    publisher, offer, sku, version = image.split(":")
    try:
        versions = self._compute.virtual_machine_images.list(region, publisher, offer, sku, top=100)
    except HttpResponseError as e:
        if e.status_code == 404:
            return f"marketplace image {publisher}:{offer}:{sku} not found in {region}"
        raise map_azure_error(e) from e
    names = {str(getattr(v, "name", "")) for v in versions}
    if not names:
        return f"marketplace image {publisher}:{offer}:{sku} has no versions in {region}"
    if version != "latest" and version not in names:
        return f"version {version} of {publisher}:{offer}:{sku} not found in {region}"
    return ""
