"""Azure compute as a burst :class:`~burst.ports.Provider` (azure-mgmt-compute, azure-identity).

Wiring (for ``burst/wiring.py``)::

    from providers.azure import AzureProvider, AzureSettings
    settings = AzureSettings.model_validate(cfg.clouds.azure.settings or {})
    provider = AzureProvider(settings, cluster=cfg.cluster)   # DefaultAzureCredential
    provider.validate()                                         # ConfigError before any launch
    offers = provider.filter_offers(offers)                     # restrictions + quota

Tests pass ``credential=`` and ``client_kwargs=`` (the stand-in's http policy) and set
``settings.base_url``.

What this module does, and how it keeps the Provider contract (burst/ports.py):

* **One VM per launch, named after the intent.** :func:`vm_name` derives the VM name from the
  intent id within Azure's naming rules (lower-case letters, digits and hyphens, at most 64;
  anything changed or cut gets a hash suffix, so two intents never share a name). ``launch``
  first GETs that name: a VM of this intent is returned as it is, never PUT again (a PUT of an
  existing VM is an update, and ARM refuses changes to custom data). The name is unique in the
  resource group, so no second VM can ever exist for one intent.
* **The NIC belongs to the VM.** ``networkProfile.networkInterfaceConfigurations`` with
  ``networkApiVersion``: ARM creates the NIC with the VM and, with ``deleteOption: Delete``,
  deletes it with the VM, as it does the OS disk. Chosen over NIC + VM through azure-mgmt-network
  (two resources to create, tag, find and delete after a crash, and a second SDK) and over a
  Flexible VM Scale Set (one more resource whose lifetime is not a VM's, and scale-set semantics
  burst does not need: it asks for one named VM per intent). One VM resource is one thing to
  find by name or tag and one thing to delete.
* **Tags**: every ``REQUIRED_TAGS`` entry, as on AWS; listing and finding go by them.
* **Spot**: priority ``Spot``, eviction policy ``Delete``, ``billingProfile.maxPrice`` (-1, i.e.
  up to the on-demand price, or the catalog price times a factor). An evicted VM is reported
  ``interrupted`` (or is gone), so the controller marks it lost and requeues its work.
* **Gangs**: a launch with ``placement_group`` goes into a proximity placement group of that name
  (created once, idempotent PUT), so the members of an ND (InfiniBand) gang sit together.
* **Node identity**: ``node_identity_id`` (terraform/azure's node identity) is attached to every
  VM as its one user-assigned identity, with which the node pulls from ACR and reads its join
  secret from Key Vault.
* **Accelerated networking** where the size supports it (ARM refuses it otherwise).
* **Offers** (:mod:`providers.azure_offers`): sizes with their restrictions from
  ``resource_skus.list`` and vCPU quota left from ``usage.list``, per region, refreshed when
  ``sku_refresh_s`` has passed on the injected clock (never a timer thread). ``supports`` and
  ``launch`` refuse what a restriction or the quota left cannot hold, before any PUT.
* **No hidden sleeping.** The SDK client has ``retry_total=0``: azure-core would otherwise retry
  408/429/5xx up to 10 times and sleep on ``Retry-After``. A 429 becomes a
  ``TransientProviderError`` whose ``retry_after`` carries the cloud's hint to the controller's
  backoff. Waiting on a long-running create is waiting on the network for the cloud's answer
  (ports.py allows that), bounded by ``launch_wait_s``: a create still running then is returned
  as pending (its outcome is seen by list/find), so the capacity errors that ARM reports within
  that time reach the offer backoff, and a slow create does not hold the tick.
  ``lro_polling_interval_s`` is the pause between status polls when ARM gives no ``Retry-After``
  of its own.
* **Errors**: :func:`providers.errors.map_azure_error` on ``HttpResponseError.error.code``. A
  create that ends ``AllocationFailed`` leaves a failed VM behind in ARM; it is deleted at once
  (and any Failed VM of this cluster that a listing shows is deleted too, so a crash between the
  two leaks nothing).
* **terminate** deletes each VM (NIC and disk go with it) without waiting for the operation; a VM
  already ``Deleting`` gets no second DELETE. Not found is success.
* **Credentials** come only from ``DefaultAzureCredential`` (managed identity, workload identity,
  environment, Azure CLI). They are never read, stored or logged here.

User data (Azure's ``customData``) is rendered by :mod:`providers.bootstrap` from the same
templates as AWS, then base64-encoded.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from burst.domain import (
    REQUIRED_TAGS,
    TAG_CLUSTER,
    TAG_EXPIRES,
    TAG_ID,
    TAG_OWNER,
    TAG_PURPOSE,
    TAG_TEAM,
    CloudInstance,
    CloudState,
    LaunchSpec,
    Market,
    Offer,
)
from burst.errors import (
    CapacityError,
    ConfigError,
    NotFound,
    PermanentProviderError,
    ProviderError,
    QuotaError,
    TransientProviderError,
)
from providers.azure_offers import RegionView, region_view
from providers.azure_offers import text as _text
from providers.azure_settings import TEMPLATE_DEFAULTS, AzureRegionSettings, AzureSettings
from providers.azure_vm import cloud_instance_from_vm, parse_vm_id, vm_name
from providers.bootstrap import load_template, node_variables, render_user_data
from providers.errors import map_azure_error

log = logging.getLogger(__name__)

PROVIDER = "azure"
MAX_CUSTOM_DATA_BYTES = 64 * 1024  # Azure's limit on customData, before base64
ALLOCATION_FAILURES = frozenset({"AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest",
                                 "OverconstrainedZonalAllocationRequest", "AllocationTimedOut"})
_TEMPLATE_SETTING = "azure.user_data_template"

__all__ = [
    "AzureProvider",
    "AzureRegionSettings",
    "AzureSettings",
    "TEMPLATE_DEFAULTS",
    "cloud_instance_from_vm",
    "parse_vm_id",
    "vm_name",
]

# --------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------


class AzureProvider:
    """The Provider Protocol on Azure. See the module docstring for the rules it keeps."""

    name = PROVIDER

    def __init__(
        self,
        settings: AzureSettings,
        *,
        cluster: str,
        credential: Any = None,
        clock: Callable[[], float] = time.monotonic,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not cluster:
            raise ConfigError("cluster", "a cluster name is needed (it is the burst:cluster tag)")
        from azure.mgmt.compute import ComputeManagementClient

        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.settings = settings
        self.cluster = cluster
        self._clock = clock
        kwargs: dict[str, Any] = {
            "retry_total": 0,  # no hidden retries or Retry-After sleeps: the controller paces
            "polling_interval": settings.lro_polling_interval_s,
            "connection_timeout": settings.connection_timeout,
            "read_timeout": settings.read_timeout,
            "user_agent": "burst",
        }
        kwargs.update(client_kwargs or {})
        if settings.base_url:
            kwargs["base_url"] = settings.base_url
        self._compute = ComputeManagementClient(credential, settings.subscription_id, **kwargs)
        self._lock = threading.RLock()
        self._views: dict[str, RegionView] = {}
        self._launched: dict[str, CloudInstance] = {}  # intent id -> what launch() returned
        self._deleting: set[str] = set()  # VM ids we asked ARM to delete
        self._ppgs: set[tuple[str, str]] = set()
        self._addresses: dict[str, str] = {}  # VM id (lower) -> private IP of its primary NIC
        self._template_text: str | None = None

    @property
    def regions(self) -> list[str]:
        return list(self.settings.regions)

    @property
    def client(self) -> Any:
        """The ComputeManagementClient (for tests and `burst config check`)."""
        return self._compute

    def _rg(self) -> str:
        return self.settings.resource_group

    def _vm_id(self, name: str) -> str:
        return (f"/subscriptions/{self.settings.subscription_id}/resourceGroups/{self._rg()}"
                f"/providers/Microsoft.Compute/virtualMachines/{name}")

    # ---- offers: restrictions and quota -------------------------------------------------------

    def view(self, region: str, *, refresh: bool = False) -> RegionView:
        """SKU facts and quota for ``region``, re-read when ``sku_refresh_s`` has passed."""
        now = self._clock()
        with self._lock:
            cached = self._views.get(region)
        if cached is not None and not refresh and now - cached.fetched_at < self.settings.sku_refresh_s:
            return cached
        try:
            skus = list(self._compute.resource_skus.list(filter=f"location eq '{region}'"))
            usages = list(self._compute.usage.list(region))
        except Exception as e:
            raise map_azure_error(e) from e
        fresh = region_view(skus, usages, region, now)
        with self._lock:
            self._views[region] = fresh
        return fresh

    def availability(self, region: str) -> dict[str, set[str]]:
        """GPU size -> zones this subscription may use it in ({""} for a size without zones);
        restricted sizes are left out. Quota is not considered here (see :meth:`supports`)."""
        out: dict[str, set[str]] = {}
        for sku in self.view(region).skus.values():
            if sku.gpus and not sku.restricted:
                out[sku.name] = set(sku.usable_zones()) or {""}
        return out

    def offer_problem(self, offer: Offer) -> tuple[str, str] | None:
        """Why this provider cannot launch ``offer`` now ((code, message)), or None."""
        if offer.cloud != PROVIDER:
            return "WrongCloud", f"offer {offer.key} is not an Azure offer"
        cfg = self.settings.regions.get(offer.region)
        if cfg is None:
            return "RegionNotConfigured", f"region {offer.region!r} is not configured (azure.regions)"
        if offer.market == Market.SPOT and not self.settings.allow_spot:
            return "SpotNotAllowed", "spot is disabled for Azure (azure.allow_spot)"
        if cfg.vm_sizes and offer.instance_type.lower() not in {s.lower() for s in cfg.vm_sizes}:
            return "SizeNotConfigured", f"{offer.instance_type} is not in azure.regions.{offer.region}.vm_sizes"
        return self.view(offer.region).problem(offer.instance_type, zone=offer.zone, spot=offer.market == Market.SPOT)

    def supports(self, offer: Offer) -> bool:
        """Whether ``offer`` can be launched now: region configured, spot allowed, the size not
        restricted for this subscription there, and enough family/regional (or Spot) vCPU quota
        left, counting this provider's launches since the last refresh."""
        return self.offer_problem(offer) is None

    def filter_offers(self, offers: Iterable[Offer]) -> list[Offer]:
        """``offers`` without the Azure ones this provider cannot launch now (others pass)."""
        return [o for o in offers if o.cloud != PROVIDER or self.supports(o)]

    def describe(self) -> dict[str, dict[str, object]]:
        """Per region: usable GPU sizes, restricted ones, and vCPU quota left (for `burst config
        check` and operators); reads ARM when the views are due for a refresh."""
        from providers.azure_offers import describe

        return describe({region: self.view(region) for region in self.regions})

    # ---- user data ----------------------------------------------------------------------------

    def template_text(self) -> str:
        if self._template_text is None:
            self._template_text = load_template(self.settings.user_data_template, where=_TEMPLATE_SETTING, cloud=PROVIDER)
        return self._template_text

    def node_name(self, intent_id: str) -> str:
        return f"{self.settings.node_name_prefix}{intent_id}"

    def user_data_variables(self, spec: LaunchSpec) -> dict[str, str]:
        region = self.settings.regions.get(spec.offer.region)
        core = node_variables(
            spec,
            cluster=self.cluster,
            provider=PROVIDER,
            node_name=self.node_name(spec.intent_id),
            harbor_host=self.settings.harbor_host,
            mirror_host=region.mirror_host if region else "",
        )
        return {**self.template_vars(), **core}

    def template_vars(self) -> dict[str, str]:
        """``template_vars`` over :data:`TEMPLATE_DEFAULTS`."""
        return {**TEMPLATE_DEFAULTS, **self.settings.template_vars}

    def render_user_data(self, spec: LaunchSpec) -> str:
        """The custom data for ``spec``: ``spec.user_data`` if set, else the rendered template."""
        if spec.user_data:
            return spec.user_data
        text = self.template_text()
        return render_user_data(text, self.user_data_variables(spec), where=_TEMPLATE_SETTING) if text else ""

    # ---- launch -------------------------------------------------------------------------------

    def _tags_for(self, spec: LaunchSpec) -> dict[str, str]:
        """Tags for the VM; a spec whose burst:id or burst:cluster disagrees is refused (as AWS)."""
        tags = {str(k): str(v) for k, v in spec.tags.items()}
        problem = ""
        if tags.setdefault(TAG_ID, spec.intent_id) != spec.intent_id:
            problem = f"tag {TAG_ID}={tags[TAG_ID]!r} differs from the intent id {spec.intent_id!r}"
        elif tags.setdefault(TAG_CLUSTER, self.cluster) != self.cluster:
            problem = f"tag {TAG_CLUSTER}={tags[TAG_CLUSTER]!r} is not this provider's cluster {self.cluster!r}"
        if problem:
            raise PermanentProviderError(problem, provider=PROVIDER, code="InvalidParameter", offer_key=spec.offer.key)
        tags.setdefault(TAG_PURPOSE, str(spec.purpose))
        tags.setdefault(TAG_OWNER, spec.owner)
        tags.setdefault(TAG_TEAM, spec.team)
        tags.setdefault(TAG_EXPIRES, "")
        tags.setdefault("Name", self.node_name(spec.intent_id))
        return tags

    def _image_reference(self, image: str) -> dict[str, str]:
        if image.startswith("/subscriptions/"):
            return {"id": image}
        publisher, offer, sku, version = image.split(":")
        return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}

    def _ensure_ppg(self, region: str, name: str, tags: Mapping[str, str]) -> str:
        """Create the proximity placement group once (an idempotent PUT); returns its id."""
        ppg_name = vm_name(name)
        key = (region, ppg_name)
        ppg_id = (f"/subscriptions/{self.settings.subscription_id}/resourceGroups/{self._rg()}"
                  f"/providers/Microsoft.Compute/proximityPlacementGroups/{ppg_name}")
        with self._lock:
            if key in self._ppgs:
                return ppg_id
        ppg_tags = {k: v for k, v in tags.items() if k in REQUIRED_TAGS}
        ppg_tags[TAG_ID] = name
        body = {"location": region, "tags": ppg_tags, "properties": {"proximityPlacementGroupType": "Standard"}}
        self._compute.proximity_placement_groups.create_or_update(self._rg(), ppg_name, cast(Any, body))
        with self._lock:
            self._ppgs.add(key)
        return ppg_id

    def build_vm(self, spec: LaunchSpec, name: str) -> dict[str, Any]:
        """The VM resource (ARM JSON) for ``spec`` (may PUT the gang's proximity placement group)."""
        offer = spec.offer
        region = offer.region
        cfg = self.settings.regions[region]
        tags = self._tags_for(spec)
        sku = self.view(region).sku(offer.instance_type)
        custom = self.render_user_data(spec)
        if len(custom.encode()) > MAX_CUSTOM_DATA_BYTES:
            raise PermanentProviderError(
                f"custom data is {len(custom.encode())} bytes; Azure allows {MAX_CUSTOM_DATA_BYTES}",
                provider=PROVIDER, code="CustomDataTooLarge", offer_key=offer.key,
            )
        keys = [k for k in (self.settings.admin_ssh_public_key, spec.ssh_public_key) if k]
        if not keys:
            raise PermanentProviderError(
                "no SSH public key for the admin user (azure.admin_ssh_public_key)",
                provider=PROVIDER, code="InvalidParameter", offer_key=offer.key,
            )
        home = f"/home/{self.settings.admin_username}/.ssh/authorized_keys"
        os_profile: dict[str, Any] = {
            "computerName": name,
            "adminUsername": self.settings.admin_username,
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {"publicKeys": [{"path": home, "keyData": k} for k in keys]},
            },
        }
        if custom:
            os_profile["customData"] = base64.b64encode(custom.encode()).decode()
        accel = self.settings.accelerated_networking and (sku is None or sku.accelerated_networking)
        nic = {
            "name": f"{name}-nic",
            "properties": {
                "primary": True,
                "deleteOption": "Delete",
                "enableAcceleratedNetworking": accel,
                "ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"primary": True, "subnet": {"id": cfg.subnet_id}}}
                ],
            },
        }
        props: dict[str, Any] = {
            "hardwareProfile": {"vmSize": offer.instance_type},
            "storageProfile": {
                "imageReference": self._image_reference(_azure_image(spec.image) or cfg.image),
                "osDisk": {
                    "name": f"{name}-osdisk",
                    "createOption": "FromImage",
                    "deleteOption": "Delete",
                    "diskSizeGB": self.settings.os_disk_gib,
                    "managedDisk": {"storageAccountType": self.settings.os_disk_type},
                },
            },
            "osProfile": os_profile,
            "networkProfile": {
                "networkApiVersion": self.settings.network_api_version,
                "networkInterfaceConfigurations": [nic],
            },
        }
        if offer.market == Market.SPOT:
            max_price = -1.0
            if self.settings.spot_max_price == "catalog":
                max_price = round(offer.price_per_hour * self.settings.spot_max_price_factor, 5)
            props["priority"] = "Spot"
            props["evictionPolicy"] = "Delete"
            props["billingProfile"] = {"maxPrice": max_price}
        if spec.placement_group and self.settings.proximity_placement_groups:
            props["proximityPlacementGroup"] = {"id": self._ensure_ppg(region, spec.placement_group, tags)}
        body: dict[str, Any] = {"location": region, "tags": tags, "properties": props}
        if self.settings.node_identity_id:
            # The node's own identity (terraform/azure: AcrPull on the mirror, Key Vault secret read):
            # the only one on the VM, so IMDS hands out its tokens without a client id.
            body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {self.settings.node_identity_id: {}}}
        if offer.zone:
            body["zones"] = [offer.zone]
        return body

    def _get_vm(self, name: str, *, instance_view: bool = False) -> Any | None:
        from azure.core.exceptions import HttpResponseError

        try:
            if instance_view:
                return self._compute.virtual_machines.get(self._rg(), name, expand="instanceView")
            return self._compute.virtual_machines.get(self._rg(), name)
        except HttpResponseError as e:
            mapped = map_azure_error(e)
            if isinstance(mapped, NotFound) or e.status_code == 404 and mapped.code != "ResourceGroupNotFound":
                return None
            raise mapped from e

    def launch(self, spec: LaunchSpec) -> CloudInstance:
        offer = spec.offer
        with self._lock:
            done = self._launched.get(spec.intent_id)
        if done is not None:  # same intent again in this process: no second VM
            return done
        name = vm_name(spec.intent_id)
        spot = offer.market == Market.SPOT
        try:
            tags = self._tags_for(spec)
            problem = self.offer_problem(offer)
            if problem is not None:
                code, msg = problem
                cls: type[ProviderError] = (
                    QuotaError if code == "QuotaExhausted" else
                    CapacityError if code in ("SkuNotAvailable", "SpotNotAllowed", "SizeNotConfigured") else
                    PermanentProviderError
                )
                raise cls(f"{offer.key}: {msg}", provider=PROVIDER, code=code, offer_key=offer.key)
            existing = self._get_vm(name, instance_view=True)
            if existing is not None:
                return self._adopt(existing, spec, name)
            body = self.build_vm(spec, name)
            with self._lock:
                self._views[offer.region].charge(offer.instance_type, spot=spot)
            try:
                poller = self._compute.virtual_machines.begin_create_or_update(self._rg(), name, cast(Any, body))
                poller.wait(self.settings.launch_wait_s)
                vm: Any
                if poller.done():
                    vm = poller.result()
                else:
                    # ARM has the VM (the PUT was accepted) but is still creating it: report it
                    # pending rather than hold the tick. A later failure shows as a Failed VM in
                    # list/find (reconciled as lost, and deleted by the listing).
                    vm = self._get_vm(name, instance_view=True)
                    if vm is None:
                        raise TransientProviderError(f"VM {name} accepted but not found yet", provider=PROVIDER,
                                                     code="NotYetVisible", offer_key=offer.key)
            except Exception as e:
                mapped = map_azure_error(e, offer_key=offer.key)
                with self._lock:
                    view = self._views.get(offer.region)
                    if view is not None:  # nothing launched: give the vCPUs back
                        view.charge(offer.instance_type, spot=spot, sign=-1)
                if mapped.code in ALLOCATION_FAILURES or getattr(e, "status_code", None) in (200, 201, 202):
                    # The create ended Failed: ARM keeps the failed VM, which would hold quota.
                    self._delete_failed(name)
                raise mapped from e
        except ProviderError as e:
            if not e.offer_key:
                e.offer_key = offer.key
            raise
        except Exception as e:
            raise map_azure_error(e, offer_key=offer.key) from e
        instance = self._with_address(cloud_instance_from_vm(vm), vm)
        if not instance.tags:
            instance = _with_tags(instance, tags)
        with self._lock:
            self._launched[spec.intent_id] = instance
        log.info("launched %s as %s (%s %s %s)", spec.intent_id, name, offer.instance_type, offer.region, offer.market)
        return instance

    def _adopt(self, vm: Any, spec: LaunchSpec, name: str) -> CloudInstance:
        """A VM of this name exists already: return it if it is this intent's, else refuse."""
        inst = cloud_instance_from_vm(vm, deleting_by_us=str(getattr(vm, "id", "")).lower() in self._deleting)
        if inst.tags.get(TAG_ID) != spec.intent_id or inst.tags.get(TAG_CLUSTER) != self.cluster:
            raise PermanentProviderError(
                f"VM {name} exists in {self._rg()} but is not intent {spec.intent_id} of cluster {self.cluster}",
                provider=PROVIDER, code="NameTaken", offer_key=spec.offer.key,
            )
        if inst.state == CloudState.FAILED:
            self._delete_failed(name)
            raise CapacityError(f"an earlier create of {name} failed; it is being deleted", provider=PROVIDER,
                                code="ProvisioningFailed", offer_key=spec.offer.key)
        if inst.state == CloudState.TERMINATED:
            raise TransientProviderError(f"VM {name} is being deleted", provider=PROVIDER, code="Deleting",
                                         offer_key=spec.offer.key)
        with self._lock:
            self._launched[spec.intent_id] = inst
        log.info("launch %s: VM %s exists already; adopted", spec.intent_id, name)
        return inst

    def _delete_failed(self, name: str) -> None:
        try:
            self._delete(name)
        except ProviderError as e:  # best effort: the next listing tries again
            log.warning("could not delete failed VM %s: %s", name, e)

    def _delete(self, name: str) -> None:
        """Start the delete of VM ``name`` without waiting for it; gone is success."""
        from azure.core.exceptions import HttpResponseError

        try:
            self._compute.virtual_machines.begin_delete(self._rg(), name, polling=False)
        except HttpResponseError as e:
            mapped = map_azure_error(e)
            if isinstance(mapped, NotFound):
                return
            raise mapped from e
        except Exception as e:
            raise map_azure_error(e) from e
        with self._lock:
            self._deleting.add(self._vm_id(name).lower())

    # ---- list / find --------------------------------------------------------------------------

    def _ours(self, vm: Any) -> bool:
        tags = getattr(vm, "tags", None) or {}
        return tags.get(TAG_CLUSTER) == self.cluster and str(getattr(vm, "location", "")) in self.settings.regions

    def _instance(self, vm: Any) -> CloudInstance:
        vid = str(getattr(vm, "id", "")).lower()
        inst = cloud_instance_from_vm(vm, deleting_by_us=vid in self._deleting)
        if inst.state == CloudState.FAILED and vid not in self._deleting:
            # A create that failed (AllocationFailed...) leaves the VM in ARM: delete it, so a
            # crash between the failure and our cleanup leaks nothing and frees the quota.
            self._delete_failed(str(getattr(vm, "name", "")))
        return self._with_address(inst, vm)

    def _with_address(self, inst: CloudInstance, vm: Any) -> CloudInstance:
        """``inst`` with the private IP of the VM's primary NIC. The NIC is the VM's own (no
        azure-mgmt-network here), so it is read with one GET through the compute client's
        pipeline, once per VM: a NIC keeps its address for the VM's life."""
        if inst.state in (CloudState.TERMINATED, CloudState.FAILED):
            return inst
        key = inst.cloud_id.lower()
        with self._lock:
            known = self._addresses.get(key)
        if known is None:
            refs = getattr(getattr(getattr(vm, "properties", None), "network_profile", None), "network_interfaces", None) or []
            primary = next((r for r in refs if getattr(r, "primary", None) is not False), None)
            nic_id = str(getattr(primary, "id", "") or "")
            if not nic_id:
                return inst
            body = self._raw_json(nic_id, self.settings.network_api_version)
            configs = ((body or {}).get("properties") or {}).get("ipConfigurations") or []
            known = str(((configs[0] if configs else {}).get("properties") or {}).get("privateIPAddress") or "")
            if not known:
                return inst
            with self._lock:
                self._addresses[key] = known
        from dataclasses import replace

        return replace(inst, address=known)

    def list_instances(self) -> list[CloudInstance]:
        try:
            vms = [vm for vm in self._compute.virtual_machines.list(self._rg(), expand="instanceView") if self._ours(vm)]
        except Exception as e:
            raise map_azure_error(e) from e
        return [self._instance(vm) for vm in vms]

    def find(self, intent_id: str) -> CloudInstance | None:
        vm = self._get_vm(vm_name(intent_id), instance_view=True)
        if vm is None or not self._ours(vm) or (getattr(vm, "tags", None) or {}).get(TAG_ID) != intent_id:
            return None
        return self._instance(vm)

    # ---- terminate ----------------------------------------------------------------------------

    def terminate(self, cloud_ids: Sequence[str]) -> None:
        """Delete each VM (with its NIC and OS disk). Ids that are not VMs of this resource group,
        or that ARM no longer has, are success; a VM already Deleting gets no second DELETE."""
        for cid in dict.fromkeys(i for i in cloud_ids if i):
            parsed = parse_vm_id(cid)
            if parsed is None or parsed[0].lower() != self.settings.subscription_id.lower() or parsed[1].lower() != self._rg().lower():
                log.info("terminate: %s is not a VM of %s; taken as gone", cid, self._rg())
                continue
            name = parsed[2]
            vm = self._get_vm(name)
            if vm is None:
                continue
            if _text(getattr(getattr(vm, "properties", None), "provisioning_state", None)) == "Deleting":
                with self._lock:
                    self._deleting.add(cid.lower())
                continue
            self._delete(name)

    # ---- validation ---------------------------------------------------------------------------

    def _raw_get(self, path: str, api_version: str) -> int:
        """GET an ARM resource through the compute client's pipeline (same credential, no
        azure-mgmt-resource/-network dependency); returns the HTTP status. Auth failures raise."""
        from azure.core.rest import HttpRequest

        try:
            resp = self._compute.send_request(HttpRequest("GET", f"{path}?api-version={api_version}"))
        except Exception as e:
            raise map_azure_error(e) from e
        if resp.status_code in (401, 403) or resp.status_code == 429 or resp.status_code >= 500:
            from azure.core.exceptions import HttpResponseError

            raise map_azure_error(HttpResponseError(response=resp))
        return int(resp.status_code)

    def _raw_json(self, path: str, api_version: str) -> dict[str, Any] | None:
        """GET an ARM resource as JSON (None when ARM has no such resource)."""
        from azure.core.rest import HttpRequest

        try:
            resp = self._compute.send_request(HttpRequest("GET", f"{path}?api-version={api_version}"))
            if resp.status_code == 404:
                return None
            resp.raise_for_status()
            body = resp.json()
        except Exception as e:
            raise map_azure_error(e) from e
        return body if isinstance(body, dict) else None

    def validate(self, instance_types: Iterable[str] = ()) -> None:
        """Check the settings against ARM before any launch (subscription, resource group, each
        region, subnet, image and size, the SSH key and the template); raise :class:`ConfigError`
        naming the first bad key (and listing the others). Auth and network failures raise the
        mapped :class:`~burst.errors.ProviderError` instead: those are not configuration mistakes."""
        from providers.azure_validate import validate_into

        problems: list[tuple[str, str]] = []
        validate_into(self, problems, list(instance_types))
        if problems:
            key, msg = problems[0]
            rest = "; ".join(f"{k}: {m}" for k, m in problems[1:])
            raise ConfigError(key, msg + (f" (also: {rest})" if rest else ""))

def _with_tags(inst: CloudInstance, tags: Mapping[str, str]) -> CloudInstance:
    from dataclasses import replace

    return replace(inst, tags=dict(tags), burst_id=tags.get(TAG_ID, ""))


def _azure_image(image: str) -> str:
    """A LaunchSpec's own image when it is an Azure one (an image resource id or a marketplace URN
    ``publisher:offer:sku:version``); "" otherwise, and the region's configured image is used."""
    if image.startswith("/subscriptions/") or (image.count(":") == 3 and all(image.split(":"))):
        return image
    return ""
