"""A local Azure Resource Manager stand-in that the real ``azure-mgmt-compute`` SDK talks to.

It serves, over HTTP on 127.0.0.1 (a free port, a thread), the part of ARM burst uses:

* virtual machines: PUT / GET / DELETE / list by resource group (``$expand=instanceView``), with
  tags, zones, priority Spot + evictionPolicy + billingProfile.maxPrice, proximity placement
  groups, ``networkProfile.networkInterfaceConfigurations`` and the OS disk ``deleteOption``;
* long-running operations in the shapes of RECIPES.md: ``Azure-AsyncOperation`` polling,
  ``Location`` polling, or the body's ``provisioningState`` (choose with ``lro=``); a PUT answers
  201 with the VM JSON, a DELETE 202; an operation may stay ``InProgress`` for n polls;
* ``resourceSkus`` with ``restrictions`` (Location and Zone, reasonCode
  NotAvailableForSubscription) and capabilities (vCPUs, GPUs, RdmaEnabled...);
* ``usages`` per location (vCPU family quota, ``cores``, ``lowPriorityCores``), updated by
  creates and deletes; quota is enforced on PUT (409 ``OperationNotAllowed``, as ARM does);
* proximity placement groups (PUT/GET), subnets, resource groups, subscriptions, marketplace
  image versions and image resource ids (GET, for validation).

Fault injection, in process (:meth:`ArmStandin.fail`, :meth:`evict`, ...) or from another process
through the JSON control endpoint ``POST /_control`` (``{"method": ..., "args": {...}}``; see
:class:`ControlClient`): capacity errors (``SkuNotAvailable`` 409 on PUT, or
``AllocationFailed``/``ZonalAllocationFailed``/``OverconstrainedAllocationRequest`` as a failed
LRO), quota (``QuotaExceeded``, ``OperationNotAllowed``), 429 with ``Retry-After``, 5xx, slow LROs,
spot eviction.

Standalone, so that a chaos test can SIGKILL the controller while the cloud keeps its state::

    python -m tests.support.arm_standin --port 0 --state /tmp/arm.json --ready-file /tmp/arm.port

The state file is rewritten after every mutation (atomically); a restart with the same file
resumes it.

Auth: every request needs ``Authorization: Bearer <token>``; :class:`StandinCredential` gives
one. Bearer auth over plain http needs the ``enforce_https=False`` per-call policy
(:class:`AllowHttpPolicy`, RECIPES.md); :func:`client_kwargs` returns both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from urllib.request import Request, urlopen

from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a1"
RESOURCE_GROUP = "burst-rg"
TOKEN = "standin-token"
LOCATIONS = ("eastus", "westus2")


# ---- client side helpers ------------------------------------------------------------------------


class StandinCredential:
    """A TokenCredential for the stand-in: ``get_token`` returns an AccessToken (never expires)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self.token, int(time.time()) + 3600)


class AllowHttpPolicy(SansIOHTTPPolicy):
    """Lets azure-core's bearer policy send a token over plain http (the stand-in's scheme)."""

    def on_request(self, request: Any) -> None:
        request.context["enforce_https"] = False


def client_kwargs() -> dict[str, Any]:
    """Extra ComputeManagementClient keyword arguments a test needs against the stand-in."""
    return {"per_call_policies": [AllowHttpPolicy()], "polling_interval": 0}


# ---- SKUs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    name: str
    family: str
    vcpus: int
    gpus: int
    memory_gb: float
    rdma: bool = False


DEFAULT_SIZES = (
    Size("Standard_NC4as_T4_v3", "standardNCASv3_T4Family", 4, 1, 28),
    Size("Standard_NC6s_v3", "standardNCSv3Family", 6, 1, 112),
    Size("Standard_NC24ads_A100_v4", "standardNCADSA100v4Family", 24, 1, 220),
    Size("Standard_NC48ads_A100_v4", "standardNCADSA100v4Family", 48, 2, 440),
    Size("Standard_NC96ads_A100_v4", "standardNCADSA100v4Family", 96, 4, 880),
    Size("Standard_NC40ads_H100_v5", "standardNCadsH100v5Family", 40, 1, 320),
    Size("Standard_NV36ads_A10_v5", "standardNVADSA10v5Family", 36, 1, 440),
    Size("Standard_ND96asr_v4", "standardNDASv4_A100Family", 96, 8, 900, rdma=True),
    Size("Standard_ND96amsr_A100_v4", "standardNDAMSv4_A100Family", 96, 8, 1900, rdma=True),
    Size("Standard_ND96isr_H100_v5", "standardNDSH100v5Family", 96, 8, 1900, rdma=True),
    Size("Standard_D4s_v5", "standardDSv5Family", 4, 0, 16),
)


# ---- faults -------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault. ``op`` is ``put_vm``, ``delete_vm``, ``get_vm``, ``list_vms``,
    ``skus``, ``usages``, ``ppg`` or ``any``; ``size``/``location``/``name`` narrow it;
    ``times`` is how many requests it hits (-1: until cleared).

    ``kind``: ``http`` answers ``status`` with ``code``/``message`` at once (with ``retry_after``
    as a Retry-After header); ``lro`` accepts the PUT and fails its operation with ``code`` after
    ``polls`` InProgress polls; ``slow`` only makes the operation take ``polls`` polls.
    """

    op: str
    kind: str = "http"
    status: int = 409
    code: str = ""
    message: str = ""
    retry_after: int | None = None
    polls: int = 0
    size: str = ""
    location: str = ""
    name: str = ""
    times: int = 1
    hits: int = 0


CAPACITY_MESSAGES = {
    "SkuNotAvailable": "The requested VM size {size} is currently not available in location '{location}'.",
    "AllocationFailed": "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
    "ZonalAllocationFailed": "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone.",
    "OverconstrainedAllocationRequest": "Allocation failed. VM(s) with the following constraints cannot be allocated.",
    "QuotaExceeded": "Operation results in exceeding quota limits of Core. Maximum allowed: 0.",
    "OperationNotAllowed": "Operation could not be completed as it results in exceeding approved {family} Cores quota.",
}


# ---- state --------------------------------------------------------------------------------------


@dataclass
class Operation:
    id: str
    kind: str  # "put" or "delete"
    rg: str
    name: str
    polls_left: int
    error: dict[str, str] | None = None
    done: bool = False


@dataclass
class State:
    subscription: str
    resource_groups: list[str]
    locations: list[str]
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)  # "rg/name" (lower) -> VM JSON
    ppgs: dict[str, dict[str, Any]] = field(default_factory=dict)
    usages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # loc -> name -> usage
    sizes: list[dict[str, Any]] = field(default_factory=list)
    restrictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # size -> restrictions
    resources: list[str] = field(default_factory=list)  # other ids answering GET (subnets, images)
    images: list[str] = field(default_factory=list)  # "location/publisher/offer/sku"
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    lro: str = "async"
    default_polls: int = 0
    evicted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # ids of every VM ever deleted
    created: int = 0  # VMs created (PUTs that made a new VM)
    nics: dict[str, dict[str, Any]] = field(default_factory=dict)  # NIC id (lower) -> NIC JSON
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)  # OS disk id (lower) -> disk JSON
    seq: int = 0


def _vm_key(rg: str, name: str) -> str:
    return f"{rg.lower()}/{name.lower()}"


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class ArmStandin:
    """The stand-in. ``start()`` serves it; methods below inject faults and read state."""

    def __init__(
        self,
        *,
        subscription: str = SUBSCRIPTION,
        resource_groups: tuple[str, ...] = (RESOURCE_GROUP,),
        locations: tuple[str, ...] = LOCATIONS,
        sizes: tuple[Size, ...] = DEFAULT_SIZES,
        family_limit: int = 1000,
        regional_limit: int = 10000,
        lro: str = "async",
        token: str = TOKEN,
        state_file: str | Path | None = None,
    ) -> None:
        self.token = token
        self.state_file = Path(state_file) if state_file else None
        self._lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if self.state_file and self.state_file.exists():
            raw = json.loads(self.state_file.read_text())
            self.state = State(**raw)
            return
        self.state = State(subscription=subscription, resource_groups=list(resource_groups), locations=list(locations), lro=lro)
        for size in sizes:
            self.state.sizes.append(asdict(size))
        for loc in locations:
            self.state.usages[loc] = {}
            self._usage(loc, "cores", "Total Regional vCPUs")["limit"] = regional_limit
            self._usage(loc, "lowPriorityCores", "Total Regional Low-priority vCPUs")["limit"] = regional_limit
            for size in sizes:
                self._usage(loc, size.family, f"{size.family} vCPUs")["limit"] = family_limit
            for rg in resource_groups:
                self.add_subnet(f"/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/burst-vnet-{loc}/subnets/default")
            self.state.images.append(f"{loc}/canonical/0001-com-ubuntu-server-jammy/22_04-lts-gen2".lower())
        for rg in resource_groups:  # terraform/azure's node identity, one per resource group
            self.add_resource(self.node_identity_id(rg=rg))
        self._save()

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self, port: int = 0) -> ArmStandin:
        standin = self

        class Handler(_Handler):
            arm = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="arm-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def subscription(self) -> str:
        return self.state.subscription

    def subnet_id(self, location: str, rg: str = RESOURCE_GROUP) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/burst-vnet-{location}/subnets/default"

    def node_identity_id(self, name: str = "burst-node", rg: str = RESOURCE_GROUP) -> str:
        """ARM id of a user-assigned identity; ``burst-node`` in each resource group exists."""
        return f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"

    def identities_of(self, name: str, rg: str = RESOURCE_GROUP) -> list[str]:
        """The user-assigned identity ids a VM was created with (ARM's ``identity`` block)."""
        vm = self.vm(name, rg)
        assert vm is not None, f"no VM {name!r}"
        return list((vm.get("identity") or {}).get("userAssignedIdentities") or {})

    # ---- configuration and faults (in process; also reachable through /_control) --------------

    def add_subnet(self, subnet_id: str) -> None:
        with self._lock:
            self.state.resources.append(subnet_id.lower())
            self._save()

    def add_resource(self, resource_id: str) -> None:
        self.add_subnet(resource_id)

    def set_lro(self, shape: str, polls: int = 0) -> None:
        """``async`` (Azure-AsyncOperation), ``location`` (Location) or ``body`` (provisioningState)."""
        if shape not in ("async", "location", "body"):
            raise ValueError(shape)
        with self._lock:
            self.state.lro = shape
            self.state.default_polls = polls
            self._save()

    def restrict(self, size: str, location: str, *, zones: list[str] | None = None) -> None:
        """Restrict ``size`` for this subscription in ``location`` (or only in ``zones`` there)."""
        with self._lock:
            if zones:
                r = {"type": "Zone", "values": [location], "restrictionInfo": {"locations": [location], "zones": zones},
                     "reasonCode": "NotAvailableForSubscription"}
            else:
                r = {"type": "Location", "values": [location], "restrictionInfo": {"locations": [location]},
                     "reasonCode": "NotAvailableForSubscription"}
            self.state.restrictions.setdefault(size, []).append(r)
            self._save()

    def set_quota(self, location: str, name: str, limit: int, current: int | None = None) -> None:
        """Set a usage row's limit (and current value): a family name, ``cores`` or ``lowPriorityCores``."""
        with self._lock:
            row = self._usage(location, name, f"{name} vCPUs")
            row["limit"] = limit
            if current is not None:
                row["currentValue"] = current
            self._save()

    def usage(self, location: str, name: str) -> tuple[int, int]:
        with self._lock:
            row = self.state.usages[location][name]
            return int(row["currentValue"]), int(row["limit"])

    def fail(self, op: str, code: str, **kw: Any) -> None:
        """Inject a fault (see :class:`Fault`). Capacity codes that ARM reports through the
        operation (AllocationFailed, ZonalAllocationFailed, OverconstrainedAllocationRequest)
        default to ``kind="lro"``; others to an immediate HTTP answer."""
        if "kind" not in kw and code in ("AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest"):
            kw["kind"] = "lro"
        if "status" not in kw:
            kw["status"] = 429 if code == "TooManyRequests" else 500 if code == "InternalServerError" else (
                503 if code == "ServiceUnavailable" else 409)
        fault = Fault(op=op, code=code, **kw)
        with self._lock:
            self.state.faults.append(asdict(fault))
            self._save()

    def throttle(self, op: str = "any", *, retry_after: int = 7, times: int = 1) -> None:
        self.fail(op, "TooManyRequests", status=429, retry_after=retry_after, times=times,
                  message="The request is being throttled.")

    def slow(self, polls: int, *, op: str = "put_vm", times: int = 1) -> None:
        self.fail(op, "", kind="slow", polls=polls, times=times)

    def clear_faults(self) -> None:
        with self._lock:
            self.state.faults.clear()
            self._save()

    def evict(self, name: str, rg: str = RESOURCE_GROUP, *, linger: bool = False) -> None:
        """Evict a spot VM. Eviction policy Delete removes it (and frees its quota); with
        ``linger`` it stays listed as deallocated/Deleting until the next ``finish_evictions``."""
        with self._lock:
            key = _vm_key(rg, name)
            vm = self.state.vms.get(key)
            if vm is None:
                raise KeyError(name)
            self.state.evicted.append(vm["id"])
            if linger:
                vm["properties"]["provisioningState"] = "Deleting"
                vm["_power"] = "PowerState/deallocated"
            else:
                self._remove_vm(key)
            self._save()

    def finish_evictions(self) -> None:
        with self._lock:
            for key, vm in list(self.state.vms.items()):
                if vm["id"] in self.state.evicted:
                    self._remove_vm(key)
            self._save()

    def complete_operations(self) -> None:
        """Let every pending operation finish (a slow LRO nobody polls any more)."""
        with self._lock:
            for op in list(self.state.ops.values()):
                op["polls_left"] = 0
                self._advance(op)
            self._save()

    # ---- reads --------------------------------------------------------------------------------

    def vms(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(v)) for v in self.state.vms.values()]

    def vm(self, name: str, rg: str = RESOURCE_GROUP) -> dict[str, Any] | None:
        with self._lock:
            vm = self.state.vms.get(_vm_key(rg, name))
            return json.loads(json.dumps(vm)) if vm is not None else None

    def count(self, method: str, pattern: str) -> int:
        rx = re.compile(pattern, re.I)
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and rx.search(p))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"vms": self.vms(), "created": self.state.created, "deleted": list(self.state.deleted),
                    "nics": sorted(n["id"] for n in self.state.nics.values()),
                    "disks": sorted(d["id"] for d in self.state.disks.values()),
                    "evicted": list(self.state.evicted), "requests": len(self.requests)}

    # ---- internals ----------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state)))
        os.replace(tmp, self.state_file)

    def _usage(self, location: str, name: str, local: str) -> dict[str, Any]:
        rows = self.state.usages.setdefault(location, {})
        if name not in rows:
            rows[name] = {"unit": "Count", "currentValue": 0, "limit": 0, "name": {"value": name, "localizedValue": local}}
        return rows[name]

    def _size(self, name: str) -> dict[str, Any] | None:
        for s in self.state.sizes:
            if s["name"].lower() == name.lower():
                return s
        return None

    def _restricted(self, size: str, location: str, zones: list[str]) -> bool:
        for r in self.state.restrictions.get(size, []):
            if location not in r["values"]:
                continue
            if r["type"] == "Location":
                return True
            if zones and set(zones) & set(r["restrictionInfo"].get("zones") or []):
                return True
        return False

    def _charge(self, vm: Mapping[str, Any], sign: int) -> None:
        size = self._size(vm["properties"]["hardwareProfile"]["vmSize"])
        if size is None:
            return
        loc = vm["location"]
        n = sign * int(size["vcpus"])
        spot = vm["properties"].get("priority") == "Spot"
        names = ["lowPriorityCores"] if spot else ["cores", size["family"]]
        for name in names:
            row = self._usage(loc, name, name)
            row["currentValue"] = max(0, int(row["currentValue"]) + n)

    def _quota_problem(self, vm: Mapping[str, Any]) -> tuple[str, str] | None:
        size = self._size(vm["properties"]["hardwareProfile"]["vmSize"])
        if size is None:
            return None
        loc = vm["location"]
        spot = vm["properties"].get("priority") == "Spot"
        names = ["lowPriorityCores"] if spot else [size["family"], "cores"]
        for name in names:
            row = self._usage(loc, name, name)
            if int(row["currentValue"]) + int(size["vcpus"]) > int(row["limit"]):
                return ("OperationNotAllowed",
                        f"Operation could not be completed as it results in exceeding approved {name} Cores quota. "
                        f"Additional details - Location: {loc}, Current Limit: {row['limit']}, "
                        f"Current Usage: {row['currentValue']}, Additional Required: {size['vcpus']}.")
        return None

    def _remove_vm(self, key: str) -> None:
        vm = self.state.vms.pop(key, None)
        if vm is not None:
            self._charge(vm, -1)
            self.state.deleted.append(vm["id"])
            # NICs and the OS disk go with the VM only when their deleteOption says so (else
            # they stay behind, as in Azure: a leak a test can see)
            for ref in vm["properties"].get("networkProfile", {}).get("networkInterfaces", []):
                if (ref.get("properties") or {}).get("deleteOption") == "Delete":
                    self.state.nics.pop(ref["id"].lower(), None)
            disk = vm["properties"].get("storageProfile", {}).get("osDisk", {})
            if disk.get("deleteOption") == "Delete":
                self.state.disks.pop(str(disk.get("managedDisk", {}).get("id", "")).lower(), None)

    def _attach_resources(self, vm: dict[str, Any], sub: str, rg: str) -> None:
        """Create the VM's NICs (from networkInterfaceConfigurations) and OS disk, as ARM does."""
        props = vm["properties"]
        refs = []
        for i, cfg in enumerate(props.get("networkProfile", {}).get("networkInterfaceConfigurations", [])):
            nic_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/{cfg['name']}"
            n = self.state.seq
            ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255 or 1}"
            ipcs = [{"name": c.get("name", "ipconfig1"), "properties": {"privateIPAddress": ip,
                     "subnet": (c.get("properties") or {}).get("subnet")}}
                    for c in (cfg.get("properties") or {}).get("ipConfigurations", [])]
            self.state.nics[nic_id.lower()] = {
                "id": nic_id, "name": cfg["name"], "location": vm["location"],
                "properties": {"ipConfigurations": ipcs, "virtualMachine": {"id": vm["id"]},
                               "enableAcceleratedNetworking": bool((cfg.get("properties") or {}).get("enableAcceleratedNetworking"))},
            }
            refs.append({"id": nic_id, "properties": {"primary": i == 0,
                                                       "deleteOption": (cfg.get("properties") or {}).get("deleteOption", "Detach")}})
        props.setdefault("networkProfile", {})["networkInterfaces"] = refs
        disk = props.get("storageProfile", {}).get("osDisk")
        if disk is not None:
            name = disk.get("name") or f"{vm['name']}_OsDisk"
            disk_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{name}"
            disk.setdefault("managedDisk", {})["id"] = disk_id
            disk.setdefault("deleteOption", "Detach")
            self.state.disks[disk_id.lower()] = {"id": disk_id, "name": name, "location": vm["location"]}

    def _take_fault(self, op: str, *, size: str = "", location: str = "", name: str = "", kinds: tuple[str, ...]) -> dict[str, Any] | None:
        for f in self.state.faults:
            if f["kind"] not in kinds or f["op"] not in (op, "any"):
                continue
            if f["size"] and f["size"].lower() != size.lower():
                continue
            if f["location"] and f["location"] != location:
                continue
            if f["name"] and f["name"].lower() != name.lower():
                continue
            if f["times"] == 0:
                continue
            f["hits"] += 1
            if f["times"] > 0:
                f["times"] -= 1
            return f
        return None

    def _new_op(self, kind: str, rg: str, name: str, polls: int, error: dict[str, str] | None) -> dict[str, Any]:
        self.state.seq += 1
        op = asdict(Operation(id=f"op-{self.state.seq}-{uuid.uuid4().hex[:8]}", kind=kind, rg=rg, name=name,
                              polls_left=polls, error=error))
        self.state.ops[op["id"]] = op
        if polls <= 0:
            self._advance(op)
        return op

    def _advance(self, op: dict[str, Any]) -> None:
        """Finish ``op`` when its polls are used up: apply its effect to the VM."""
        if op["done"] or op["polls_left"] > 0:
            return
        op["done"] = True
        key = _vm_key(op["rg"], op["name"])
        vm = self.state.vms.get(key)
        if op["kind"] == "put":
            if vm is None:
                return
            if op["error"]:
                vm["properties"]["provisioningState"] = "Failed"
                vm["_power"] = "PowerState/stopped"
            elif vm["properties"]["provisioningState"] == "Creating":
                vm["properties"]["provisioningState"] = "Succeeded"
                vm["_power"] = "PowerState/running"
        else:
            self._remove_vm(key)

    def _progress(self, key: str) -> None:
        """One poll's worth of progress for every pending operation on VM ``key``."""
        for op in list(self.state.ops.values()):
            if not op["done"] and _vm_key(op["rg"], op["name"]) == key:
                self._poll(op["id"])

    def _poll(self, op_id: str) -> dict[str, Any] | None:
        op = self.state.ops.get(op_id)
        if op is None:
            return None
        if not op["done"]:
            op["polls_left"] -= 1
            self._advance(op)
        return op

    def vm_view(self, vm: Mapping[str, Any], *, instance_view: bool) -> dict[str, Any]:
        out = {k: v for k, v in vm.items() if not k.startswith("_")}
        out = json.loads(json.dumps(out))
        if instance_view:
            prov = vm["properties"]["provisioningState"]
            out["properties"]["instanceView"] = {
                "statuses": [
                    {"code": f"ProvisioningState/{prov.lower()}", "level": "Info", "displayStatus": prov},
                    {"code": vm.get("_power", "PowerState/starting"), "level": "Info"},
                ]
            }
        return out


# ---- HTTP ---------------------------------------------------------------------------------------

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<rg>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("vm", re.compile(_RG + r"/providers/Microsoft\.Compute/virtualMachines/(?P<name>[^/]+)$", re.I)),
    ("vms", re.compile(_RG + r"/providers/Microsoft\.Compute/virtualMachines$", re.I)),
    ("ppg", re.compile(_RG + r"/providers/Microsoft\.Compute/proximityPlacementGroups/(?P<name>[^/]+)$", re.I)),
    ("skus", re.compile(_SUB + r"/providers/Microsoft\.Compute/skus$", re.I)),
    ("usages", re.compile(_SUB + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/usages$", re.I)),
    ("images", re.compile(_SUB + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/publishers/(?P<pub>[^/]+)"
                          r"/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions$", re.I)),
    ("rg", re.compile(_RG + r"$", re.I)),
    ("sub", re.compile(_SUB + r"$", re.I)),
    ("resource", re.compile(_RG + r"/providers/.+$", re.I)),
]


class _Handler(BaseHTTPRequestHandler):
    arm: ArmStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes; without NODELAY, delayed ACKs add ~40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # one entry point for every method
    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_POST(self) -> None:
        self._serve("POST")

    def _send(self, status: int, body: bytes | dict[str, Any] | list[Any] | None = None,
              headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else (body or b"")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", uuid.uuid4().hex)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, _error_body(code, message), headers)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        arm = self.arm
        with arm._lock:
            arm.requests.append((method, path))
        if path == "/_control" and method == "POST":
            self._control(raw)
            return
        if self.headers.get("Authorization", "") != f"Bearer {arm.token}":
            self._error(401, "InvalidAuthenticationToken", "The access token is invalid.")
            return
        try:
            with arm._lock:
                self._route(method, path, query, raw)
                arm._save()
        except BrokenPipeError:
            pass

    def _control(self, raw: bytes) -> None:
        body = json.loads(raw or b"{}")
        name = str(body.get("method", ""))
        allowed = {"fail", "throttle", "slow", "clear_faults", "evict", "finish_evictions", "restrict", "set_quota",
                   "set_lro", "complete_operations", "snapshot", "usage", "add_subnet", "add_resource"}
        if name not in allowed:
            self._send(400, {"error": f"unknown control method {name!r}"})
            return
        result = getattr(self.arm, name)(**(body.get("args") or {}))
        self._send(200, {"result": result})

    def _route(self, method: str, path: str, query: Mapping[str, str], raw: bytes) -> None:
        arm = self.arm
        st = arm.state
        if path.startswith("/_ops/") or path.startswith("/_loc/"):
            self._poll_op(path)
            return
        for kind, rx in _ROUTES:
            m = rx.match(path)
            if m is None:
                continue
            groups = m.groupdict()
            if groups["sub"].lower() != st.subscription.lower():
                self._error(404, "SubscriptionNotFound", f"The subscription '{groups['sub']}' could not be found.")
                return
            rg = groups.get("rg")
            if rg is not None and rg.lower() not in [r.lower() for r in st.resource_groups]:
                self._error(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
                return
            getattr(self, f"_{kind}")(method, groups, query, raw)
            return
        self._error(404, "NotFound", f"no route for {path}")

    # -- faults common to every operation
    def _http_fault(self, op: str, **match: str) -> bool:
        f = self.arm._take_fault(op, kinds=("http",), **match)
        if f is None:
            return False
        msg = f["message"] or CAPACITY_MESSAGES.get(f["code"], f["code"]).format(
            size=match.get("size", ""), location=match.get("location", ""), family="")
        headers = {"Retry-After": str(f["retry_after"])} if f["retry_after"] is not None else None
        self._error(int(f["status"]), f["code"] or "InternalServerError", msg, headers)
        return True

    def _sub(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        self._send(200, {"id": f"/subscriptions/{g['sub']}", "subscriptionId": g["sub"], "state": "Enabled",
                         "displayName": "stand-in"})

    def _rg(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        self._send(200, {"id": f"/subscriptions/{g['sub']}/resourceGroups/{g['rg']}", "name": g["rg"],
                         "location": self.arm.state.locations[0], "properties": {"provisioningState": "Succeeded"}})

    def _resource(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        path = urlsplit(self.path).path
        for table in (self.arm.state.nics, self.arm.state.disks):
            if method == "GET" and path.lower() in table:
                self._send(200, table[path.lower()])
                return
        if method == "GET" and path.lower() in self.arm.state.resources:
            self._send(200, {"id": path, "name": path.rsplit("/", 1)[-1], "properties": {"provisioningState": "Succeeded"}})
            return
        self._error(404, "ResourceNotFound", f"The Resource '{path}' was not found.")

    def _images(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        key = f"{g['loc']}/{g['pub']}/{g['offer']}/{g['sku']}".lower()
        if key not in self.arm.state.images:
            self._error(404, "NotFound", "Artifact: VMImage was not found.")
            return
        self._send(200, [{"name": "22.04.202601010", "location": g["loc"], "id": f"{self.path}/22.04.202601010"}])

    def _skus(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        if self._http_fault("skus"):
            return
        st = self.arm.state
        loc_filter = ""
        m = re.search(r"location eq '([^']+)'", q.get("$filter", ""))
        if m:
            loc_filter = m.group(1)
        out = []
        for s in st.sizes:
            for loc in st.locations:
                if loc_filter and loc != loc_filter:
                    continue
                caps = [
                    {"name": "vCPUs", "value": str(s["vcpus"])},
                    {"name": "MemoryGB", "value": str(s["memory_gb"])},
                    {"name": "AcceleratedNetworkingEnabled", "value": "True"},
                    {"name": "LowPriorityCapable", "value": "True"},
                    {"name": "RdmaEnabled", "value": "True" if s["rdma"] else "False"},
                ]
                if s["gpus"]:
                    caps.append({"name": "GPUs", "value": str(s["gpus"])})
                out.append({
                    "resourceType": "virtualMachines", "name": s["name"], "tier": "Standard",
                    "size": s["name"].removeprefix("Standard_"), "family": s["family"], "locations": [loc],
                    "locationInfo": [{"location": loc, "zones": ["1", "2", "3"], "zoneDetails": []}],
                    "capabilities": caps,
                    "restrictions": [r for r in st.restrictions.get(s["name"], []) if loc in r["values"]],
                })
        self._send(200, {"value": out})

    def _usages(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        if self._http_fault("usages", location=g["loc"]):
            return
        rows = self.arm.state.usages.get(g["loc"].lower())
        if rows is None:
            self._error(404, "NoRegisteredProviderFound", f"No registered resource provider found for location '{g['loc']}'.")
            return
        self._send(200, {"value": list(rows.values())})

    def _ppg(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        if self._http_fault("ppg", name=g["name"]):
            return
        st = self.arm.state
        key = _vm_key(g["rg"], g["name"])
        rid = f"/subscriptions/{g['sub']}/resourceGroups/{g['rg']}/providers/Microsoft.Compute/proximityPlacementGroups/{g['name']}"
        if method == "PUT":
            body = json.loads(raw or b"{}")
            existing = st.ppgs.get(key)
            ppg = {"id": rid, "name": g["name"], "type": "Microsoft.Compute/proximityPlacementGroups",
                   "location": body.get("location", ""), "tags": body.get("tags") or {},
                   "properties": {"proximityPlacementGroupType": (body.get("properties") or {}).get("proximityPlacementGroupType", "Standard")}}
            if existing is not None and existing["location"] != ppg["location"]:
                self._error(409, "InvalidParameter", "A proximity placement group cannot change location.")
                return
            st.ppgs[key] = ppg
            self._send(200 if existing else 201, ppg)
        elif method == "GET":
            found = st.ppgs.get(key)
            if found is None:
                self._error(404, "ResourceNotFound", f"The Resource '{rid}' was not found.")
            else:
                self._send(200, found)
        else:
            self._error(405, "MethodNotAllowed", method)

    def _vms(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        if self._http_fault("list_vms"):
            return
        iv = q.get("$expand", "").lower() == "instanceview"
        if q.get("page") != "2":
            for key in list(self.arm.state.vms):
                self.arm._progress(key)
        vms = [self.arm.vm_view(v, instance_view=iv) for k, v in sorted(self.arm.state.vms.items())
               if k.startswith(g["rg"].lower() + "/")]
        # two pages, so the SDK's paging (nextLink) is exercised
        if q.get("page") == "2":
            self._send(200, {"value": vms[len(vms) // 2:]})
            return
        base = f"{self._base()}{urlsplit(self.path).path}?api-version={q.get('api-version', '')}&page=2"
        if iv:
            base += "&$expand=instanceView"
        self._send(200, {"value": vms[: len(vms) // 2], "nextLink": base})

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _op_headers(self, op: dict[str, Any]) -> dict[str, str]:
        shape = self.arm.state.lro
        if shape == "async":
            return {"Azure-AsyncOperation": f"{self._base()}/_ops/{op['id']}"}
        if shape == "location":
            return {"Location": f"{self._base()}/_loc/{op['id']}"}
        return {}

    def _vm(self, method: str, g: Mapping[str, str], q: Mapping[str, str], raw: bytes) -> None:
        arm = self.arm
        st = arm.state
        key = _vm_key(g["rg"], g["name"])
        vm = st.vms.get(key)
        if method == "GET":
            if self._http_fault("get_vm", name=g["name"]):
                return
            if vm is None:
                self._error(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/{g['name']}' under resource group '{g['rg']}' was not found.")
                return
            # The cloud goes on working while nobody polls the operation (a controller killed
            # mid-create): every read of the VM counts as a poll of its pending operations.
            arm._progress(key)
            vm = st.vms.get(key)
            if vm is None:
                self._error(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/{g['name']}' under resource group '{g['rg']}' was not found.")
                return
            iv = q.get("$expand", "").lower() == "instanceview"
            self._send(200, arm.vm_view(vm, instance_view=iv))
            return
        if method == "DELETE":
            if self._http_fault("delete_vm", name=g["name"]):
                return
            if vm is None:
                self._send(204)
                return
            slow = arm._take_fault("delete_vm", name=g["name"], kinds=("slow",))
            vm["properties"]["provisioningState"] = "Deleting"
            op = arm._new_op("delete", g["rg"], g["name"], slow["polls"] if slow else st.default_polls, None)
            headers = self._op_headers(op)
            if not headers:  # body shape for DELETE: Location polling, as ARM does
                headers = {"Location": f"{self._base()}/_loc/{op['id']}"}
            self._send(202, b"", headers)
            return
        if method != "PUT":
            self._error(405, "MethodNotAllowed", method)
            return
        body = json.loads(raw or b"{}")
        props = body.get("properties") or {}
        size = str((props.get("hardwareProfile") or {}).get("vmSize") or "")
        loc = str(body.get("location") or "")
        if self._http_fault("put_vm", size=size, location=loc, name=g["name"]):
            return
        if vm is not None:
            # An update of an existing VM: never a second VM. Only tags may change here.
            if vm["properties"]["provisioningState"] == "Deleting":
                self._error(409, "OperationNotAllowed", "The VM is being deleted.")
                return
            if (vm["properties"]["hardwareProfile"]["vmSize"] != size) or vm["location"] != loc:
                self._error(409, "PropertyChangeNotAllowed", "Changing property 'vmSize' or 'location' is not allowed.")
                return
            vm["tags"] = body.get("tags") or vm["tags"]
            self._send(200, arm.vm_view(vm, instance_view=False))
            return
        problems = self._validate_vm(body, size, loc)
        if problems:
            self._error(400, "InvalidParameter", problems)
            return
        zones = list(body.get("zones") or [])
        if arm._size(size) is None or arm._restricted(size, loc, zones):
            self._error(409, "SkuNotAvailable", CAPACITY_MESSAGES["SkuNotAvailable"].format(size=size, location=loc))
            return
        quota = arm._quota_problem(body)
        if quota is not None:
            self._error(409, *quota)
            return
        rid = f"/subscriptions/{g['sub']}/resourceGroups/{g['rg']}/providers/Microsoft.Compute/virtualMachines/{g['name']}"
        st.seq += 1
        props = json.loads(json.dumps(props))
        props["provisioningState"] = "Creating"
        props["vmId"] = str(uuid.UUID(int=st.seq))
        props["timeCreated"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        (props.get("osProfile") or {}).pop("customData", None)  # ARM never returns custom data
        new = {"id": rid, "name": g["name"], "type": "Microsoft.Compute/virtualMachines", "location": loc,
               "tags": body.get("tags") or {}, "properties": props, "_power": "PowerState/starting",
               "_customData": (body.get("properties") or {}).get("osProfile", {}).get("customData", "")}
        if zones:
            new["zones"] = zones
        identity = body.get("identity") or {}
        if identity:  # as ARM answers: each identity with its principal and client ids
            new["identity"] = {
                "type": identity.get("type"),
                "userAssignedIdentities": {
                    rid_: {"principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, rid_.lower())),
                           "clientId": str(uuid.uuid5(uuid.NAMESPACE_DNS, rid_.lower()))}
                    for rid_ in identity.get("userAssignedIdentities") or {}
                },
            }
        arm._attach_resources(new, g["sub"], g["rg"])
        st.vms[key] = new
        st.created += 1
        arm._charge(new, +1)
        lro = arm._take_fault("put_vm", size=size, location=loc, name=g["name"], kinds=("lro",))
        slow = arm._take_fault("put_vm", size=size, location=loc, name=g["name"], kinds=("slow",))
        polls = (lro or slow or {}).get("polls", 0) or st.default_polls
        error = None
        if lro is not None:
            error = {"code": lro["code"], "message": lro["message"] or CAPACITY_MESSAGES.get(lro["code"], lro["code"]).format(
                size=size, location=loc, family="")}
        op = arm._new_op("put", g["rg"], g["name"], polls, error)
        self._send(201, arm.vm_view(new, instance_view=False), self._op_headers(op))

    def _validate_vm(self, body: Mapping[str, Any], size: str, loc: str) -> str:
        """What a real ARM checks that our provider could get wrong."""
        props = body.get("properties") or {}
        st = self.arm.state
        if loc not in st.locations:
            return f"location {loc!r} is not available"
        net = props.get("networkProfile") or {}
        if not net.get("networkApiVersion"):
            return "networkProfile.networkApiVersion is required with networkInterfaceConfigurations"
        nics = net.get("networkInterfaceConfigurations") or []
        if not nics:
            return "networkProfile.networkInterfaceConfigurations is required"
        for nic in nics:
            for ipc in (nic.get("properties") or {}).get("ipConfigurations") or []:
                subnet = str(((ipc.get("properties") or {}).get("subnet") or {}).get("id") or "")
                if subnet.lower() not in st.resources:
                    return f"subnet {subnet!r} not found"
        os_profile = props.get("osProfile") or {}
        if not os_profile.get("adminUsername") or not os_profile.get("computerName"):
            return "osProfile.adminUsername and osProfile.computerName are required"
        ppg = (props.get("proximityPlacementGroup") or {}).get("id")
        if ppg:
            m = re.search(r"/resourceGroups/([^/]+)/providers/Microsoft\.Compute/proximityPlacementGroups/([^/]+)$", ppg, re.I)
            if m is None or _vm_key(m.group(1), m.group(2)) not in st.ppgs:
                return f"proximity placement group {ppg!r} not found"
        if props.get("priority") == "Spot" and not props.get("evictionPolicy"):
            return "evictionPolicy is required for Spot"
        identity = body.get("identity")
        if identity is not None:
            kind = str(identity.get("type") or "")
            assigned = identity.get("userAssignedIdentities") or {}
            if kind not in ("SystemAssigned", "UserAssigned", "SystemAssigned, UserAssigned", "None"):
                return f"identity.type {kind!r} is not valid"
            if ("UserAssigned" in kind) != bool(assigned):
                return "identity.userAssignedIdentities must be given exactly when identity.type includes UserAssigned"
            for rid in assigned:
                if not re.search(r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$", rid, re.I):
                    return f"{rid!r} is not a user-assigned identity id"
                if rid.lower() not in st.resources:
                    return f"user-assigned identity {rid!r} not found"
        return ""

    def _poll_op(self, path: str) -> None:
        arm = self.arm
        op_id = path.rsplit("/", 1)[-1]
        if self._http_fault("poll"):
            return
        op = arm._poll(op_id)
        if op is None:
            self._error(404, "NotFound", "no such operation")
            return
        location = path.startswith("/_loc/")
        if not op["done"]:
            if location:
                self._send(202, b"", {"Location": f"{self._base()}{path}"})
            else:
                self._send(200, {"name": op_id, "status": "InProgress"})
            return
        if op["error"]:
            if location:
                self._send(400, {"error": op["error"]})
            else:
                self._send(200, {"name": op_id, "status": "Failed", "error": op["error"]})
            return
        if location:
            vm = arm.state.vms.get(_vm_key(op["rg"], op["name"]))
            if op["kind"] == "put" and vm is not None:
                self._send(200, arm.vm_view(vm, instance_view=False))
            else:
                self._send(204)
            return
        self._send(200, {"name": op_id, "status": "Succeeded"})


# ---- another process ----------------------------------------------------------------------------


class ControlClient:
    """Drive a stand-in in another process through ``POST /_control`` (same method names)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")

    def call(self, method: str, **args: Any) -> Any:
        req = Request(f"{self.endpoint}/_control", data=json.dumps({"method": method, "args": args}).encode(),
                      headers={"Content-Type": "application/json"}, method="POST")
        with urlopen(req, timeout=60) as resp:  # noqa: S310 (a local test server; generous for a loaded machine)
            return json.loads(resp.read())["result"]

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda **kw: self.call(name, **kw)


def serve_standin(**kw: Any) -> Iterator[ArmStandin]:
    """For fixtures: ``yield from serve_standin()``."""
    standin = ArmStandin(**kw).start()
    try:
        yield standin
    finally:
        standin.stop()


def custom_data_of(standin: ArmStandin, name: str, rg: str = RESOURCE_GROUP) -> str:
    """The decoded custom data a VM was created with (ARM never returns it; the stand-in keeps it)."""
    import base64

    with standin._lock:
        vm = standin.state.vms[_vm_key(rg, name)]
        return base64.b64decode(vm.get("_customData") or "").decode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ARM stand-in for burst's Azure tests")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", default=None, help="state file (kept across restarts)")
    parser.add_argument("--ready-file", default=None, help="write the port here once serving")
    parser.add_argument("--lro", default="async", choices=["async", "location", "body"])
    args = parser.parse_args(argv)
    standin = ArmStandin(state_file=args.state, lro=args.lro).start(args.port)
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(str(standin.port))
        os.replace(tmp, args.ready_file)
    print(standin.endpoint, flush=True)
    try:
        for _ in itertools.count():
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
