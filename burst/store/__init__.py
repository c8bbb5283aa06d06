"""Persistent state. See :mod:`burst.store.base` for the contract."""

from burst.store.base import AuditRow, Backoff, BudgetCheck, MirrorRecord, SpendEntry, Store
from burst.store.memory import MemoryStore

__all__ = ["AuditRow", "Backoff", "BudgetCheck", "MirrorRecord", "SpendEntry", "Store", "MemoryStore"]
