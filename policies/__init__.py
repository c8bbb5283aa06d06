"""Pure decision code: ``decide(snapshot, config) -> Plan``. No clock, I/O or database here."""

from policies.decide import decide
from policies.model import (
    BudgetConfig,
    OverflowConfig,
    PolicyConfig,
    ScaleInConfig,
    SelectionConfig,
    Snapshot,
    SpendView,
)

__all__ = [
    "decide",
    "BudgetConfig",
    "OverflowConfig",
    "PolicyConfig",
    "ScaleInConfig",
    "SelectionConfig",
    "Snapshot",
    "SpendView",
]
