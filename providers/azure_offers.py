"""What Azure will let this subscription launch: VM sizes with their restrictions, and the vCPU
quota left per family, per region. Pure bookkeeping; :class:`providers.azure.AzureProvider` fills
it from ``resource_skus.list`` and ``usage.list`` on a slow timer and asks it before every launch.

Why it exists: most failed first launches on Azure are quota (the Karpenter Azure provider's
design note 0012 counts 94.5% of its failures as family quota). A launch that quota or a
restriction cannot hold is refused here, without a call, so the policy's next offer is tried at
once; and ``supports`` keeps such offers away from the policy in the first place.

Quota rows (``usage.list``): the VM family (``standardNDASv4_A100Family``) and ``cores`` (all
regular vCPUs in the region) for on-demand VMs; ``lowPriorityCores`` for Spot. A row Azure does not
list is not a limit we know of, so it does not refuse anything. vCPUs of VMs launched since the
last refresh are counted against the rows (Azure's usage would show them only at the next
refresh).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

SPOT_QUOTA = "lowPriorityCores"
REGIONAL_QUOTA = "cores"


@dataclass(frozen=True, slots=True)
class SkuFacts:
    """One VM size in one region, as ``resource_skus.list`` describes it for this subscription."""

    name: str
    family: str
    vcpus: int
    gpus: int
    memory_gb: float = 0.0
    rdma: bool = False  # InfiniBand (ND-series "r" sizes)
    accelerated_networking: bool = False
    zones: frozenset[str] = frozenset()
    restricted: bool = False  # a Location restriction: the subscription may not use it here
    restricted_zones: frozenset[str] = frozenset()
    reason: str = ""  # the restriction's reasonCode

    def usable_zones(self) -> frozenset[str]:
        return self.zones - self.restricted_zones


@dataclass
class RegionView:
    """Facts for one region, fetched at ``fetched_at`` (the provider's clock)."""

    fetched_at: float
    skus: dict[str, SkuFacts]  # lower-cased size name -> facts
    usage: dict[str, tuple[int, int]]  # quota row name -> (current, limit)
    launched: dict[str, int] = field(default_factory=dict)  # quota row -> vCPUs launched since

    def sku(self, size: str) -> SkuFacts | None:
        return self.skus.get(size.lower())

    def quota_rows(self, sku: SkuFacts, *, spot: bool) -> tuple[str, ...]:
        return (SPOT_QUOTA,) if spot else (sku.family, REGIONAL_QUOTA)

    def remaining(self, row: str) -> int | None:
        """vCPUs left in quota row ``row``; None when Azure lists no such row."""
        got = self.usage.get(row)
        if got is None:
            return None
        current, limit = got
        return limit - current - self.launched.get(row, 0)

    def problem(self, size: str, *, zone: str = "", spot: bool = False) -> tuple[str, str] | None:
        """(code, message) when this region cannot hold one VM of ``size``; None when it can.

        Codes: ``SkuNotAvailable`` (unknown size, or restricted for this subscription here or in
        ``zone``) and ``QuotaExhausted`` (a quota row has fewer vCPUs left than the size needs).
        """
        sku = self.sku(size)
        if sku is None:
            return "SkuNotAvailable", f"{size} is not offered in this region"
        if sku.restricted:
            return "SkuNotAvailable", f"{size} is restricted for this subscription here ({sku.reason or 'restricted'})"
        if zone and (zone in sku.restricted_zones or (sku.zones and zone not in sku.zones)):
            return "SkuNotAvailable", f"{size} is not available in zone {zone} for this subscription"
        for row in self.quota_rows(sku, spot=spot):
            left = self.remaining(row)
            if left is not None and left < sku.vcpus:
                return "QuotaExhausted", f"quota {row} has {max(left, 0)} vCPUs left; {size} needs {sku.vcpus}"
        return None

    def charge(self, size: str, *, spot: bool, sign: int = 1) -> None:
        """Count a launch (sign 1) or a failed launch given back (-1) against the quota rows."""
        sku = self.sku(size)
        if sku is None:
            return
        for row in self.quota_rows(sku, spot=spot):
            self.launched[row] = self.launched.get(row, 0) + sign * sku.vcpus


def text(value: object) -> str:
    """An SDK string or str-enum as its wire text (``str()`` of an enum member is its qualified
    name, e.g. ``ResourceSkuRestrictionsType.LOCATION``)."""
    if isinstance(value, Enum):
        return str(value.value)
    return str(value or "")


def _capability(caps: Iterable[object], name: str) -> str:
    for cap in caps:
        if str(getattr(cap, "name", "")) == name:
            return str(getattr(cap, "value", "") or "")
    return ""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def sku_facts(sku: object, location: str) -> SkuFacts | None:
    """Facts from one ``ResourceSku`` model for ``location`` (None when it is not a VM size there)."""
    if text(getattr(sku, "resource_type", None)).lower() != "virtualmachines":
        return None
    locations = [str(x).lower() for x in (getattr(sku, "locations", None) or [])]
    if locations and location.lower() not in locations:
        return None
    caps = list(getattr(sku, "capabilities", None) or [])
    zones: set[str] = set()
    for info in getattr(sku, "location_info", None) or []:
        if str(getattr(info, "location", "")).lower() == location.lower():
            zones.update(str(z) for z in (getattr(info, "zones", None) or []))
    restricted = False
    restricted_zones: set[str] = set()
    reason = ""
    for r in getattr(sku, "restrictions", None) or []:
        values = [str(v).lower() for v in (getattr(r, "values_property", None) or [])]
        if location.lower() not in values:
            continue
        kind = text(getattr(r, "type", None))
        reason = text(getattr(r, "reason_code", None))
        if kind == "Location":
            restricted = True
        elif kind == "Zone":
            info = getattr(r, "restriction_info", None)
            restricted_zones.update(str(z) for z in (getattr(info, "zones", None) or []))
    return SkuFacts(
        name=str(getattr(sku, "name", "")),
        family=str(getattr(sku, "family", "") or ""),
        vcpus=int(_number(_capability(caps, "vCPUs"))),
        gpus=int(_number(_capability(caps, "GPUs"))),
        memory_gb=_number(_capability(caps, "MemoryGB")),
        rdma=_capability(caps, "RdmaEnabled").lower() == "true",
        accelerated_networking=_capability(caps, "AcceleratedNetworkingEnabled").lower() == "true",
        zones=frozenset(zones),
        restricted=restricted,
        restricted_zones=frozenset(restricted_zones),
        reason=reason,
    )


def usage_rows(usages: Iterable[object]) -> dict[str, tuple[int, int]]:
    """quota row name -> (current, limit) from ``usage.list`` models."""
    out: dict[str, tuple[int, int]] = {}
    for u in usages:
        name = getattr(getattr(u, "name", None), "value", None)
        if name:
            out[str(name)] = (int(getattr(u, "current_value", 0) or 0), int(getattr(u, "limit", 0) or 0))
    return out


def region_view(skus: Iterable[object], usages: Iterable[object], location: str, now: float) -> RegionView:
    facts: dict[str, SkuFacts] = {}
    for sku in skus:
        f = sku_facts(sku, location)
        if f is not None:
            facts[f.name.lower()] = f
    return RegionView(fetched_at=now, skus=facts, usage=usage_rows(usages))


def describe(views: Mapping[str, RegionView]) -> dict[str, dict[str, object]]:
    """A JSON-able summary (region -> usable GPU sizes and quota left), for `burst config check`."""
    out: dict[str, dict[str, object]] = {}
    for region, view in views.items():
        out[region] = {
            "gpu_sizes": sorted(s.name for s in view.skus.values() if s.gpus and not s.restricted),
            "restricted": sorted(s.name for s in view.skus.values() if s.gpus and s.restricted),
            "quota_left": {row: view.remaining(row) for row in sorted(view.usage)},
        }
    return out
