"""Azure VM names and ARM's VM JSON mapped to burst's :class:`~burst.domain.CloudInstance`."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from burst.domain import TAG_ID, CloudInstance, CloudState, Market
from providers.azure_offers import text as _text

PROVIDER = "azure"
MAX_VM_NAME = 64  # Linux VM names and computer names
_VM_ID = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/virtualMachines/([^/]+)$", re.I)

def vm_name(intent_id: str) -> str:
    """The VM name (and computer name) for an intent: deterministic, within Azure's rules for Linux
    VMs (1-64 of ``[a-z0-9-]``, no leading or trailing hyphen). An intent id that already fits is
    used as is; otherwise the cleaned name is cut and given a hash of the original, so two
    different intents never map to one name."""
    clean = re.sub(r"[^a-z0-9-]+", "-", intent_id.lower()).strip("-")
    if clean == intent_id and 0 < len(clean) <= MAX_VM_NAME:
        return clean
    digest = hashlib.sha256(intent_id.encode()).hexdigest()[:12]
    head = clean[: MAX_VM_NAME - len(digest) - 1].strip("-") or "burst"
    return f"{head}-{digest}"


def parse_vm_id(cloud_id: str) -> tuple[str, str, str] | None:
    """(subscription, resource group, VM name) of a VM resource id; None for anything else."""
    m = _VM_ID.match(cloud_id)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _statuses(vm: Any) -> list[str]:
    props = getattr(vm, "properties", None)
    view = getattr(props, "instance_view", None)
    return [str(getattr(s, "code", "") or "") for s in (getattr(view, "statuses", None) or [])]


def cloud_instance_from_vm(vm: Any, *, deleting_by_us: bool = False) -> CloudInstance:
    """Map a ``VirtualMachine`` model to a :class:`CloudInstance`.

    provisioningState Creating -> pending; Succeeded -> running once the power state says so
    (pending before); Deleting -> terminated; Failed -> failed. A Spot VM that is deallocated, or
    being deleted without our asking, was evicted: ``interrupted`` (its work is requeued).
    """
    props = getattr(vm, "properties", None)
    prov = _text(getattr(props, "provisioning_state", None))
    power = next((c for c in _statuses(vm) if c.startswith("PowerState/")), "")
    spot = _text(getattr(props, "priority", None)) == "Spot"
    tags = {str(k): str(v) for k, v in (getattr(vm, "tags", None) or {}).items()}
    interrupted = False
    if prov == "Deleting":
        state = CloudState.TERMINATED
        interrupted = spot and not deleting_by_us
    elif prov == "Failed":
        state = CloudState.FAILED
    elif power in ("PowerState/deallocated", "PowerState/deallocating"):
        state = CloudState.TERMINATED if spot else CloudState.STOPPING
        interrupted = spot
    elif power in ("PowerState/stopped", "PowerState/stopping"):
        state = CloudState.STOPPING
    elif prov == "Succeeded" and (power in ("", "PowerState/running")):
        state = CloudState.RUNNING
    else:
        state = CloudState.PENDING
    created = getattr(props, "time_created", None)
    launched_at = created.timestamp() if isinstance(created, datetime) else None
    zones = list(getattr(vm, "zones", None) or [])
    size = _text(getattr(getattr(props, "hardware_profile", None), "vm_size", None))
    return CloudInstance(
        cloud=PROVIDER,
        cloud_id=str(getattr(vm, "id", "")),
        burst_id=tags.get(TAG_ID, ""),
        region=str(getattr(vm, "location", "") or ""),
        zone=zones[0] if zones else "",
        instance_type=size,
        state=state,
        tags=tags,
        launched_at=launched_at,
        interrupted=interrupted,
        market=Market.SPOT if spot else Market.ON_DEMAND,
    )


