"""The spend ledger's rules, shared by every store: what an instance cost once it is terminated.

Both stores append exactly one :class:`burst.ports.SpendEntry` per instance when it reaches
TERMINATED, and price live instances the same way, so the two agree to the cent.
"""

from __future__ import annotations

from burst.domain import Instance
from burst.ports import SpendEntry

BILLING_MINIMUM_S = 60.0  # clouds bill at least a minute per instance that ran


def ledger_entry(inst: Instance) -> SpendEntry:
    """The ledger entry of a terminated instance: from launch (or termination, when it never
    launched) to termination; an instance that never launched cost nothing."""
    assert inst.terminated_at is not None
    start = inst.launched_at if inst.launched_at is not None else inst.terminated_at
    return SpendEntry(
        instance_id=inst.id,
        cloud=inst.cloud,
        region=inst.region,
        purpose=str(inst.purpose),
        team=inst.team,
        owner=inst.owner,
        start=start,
        end=inst.terminated_at,
        usd=inst.cost(inst.terminated_at, BILLING_MINIMUM_S) if inst.launched_at is not None else 0.0,
    )
