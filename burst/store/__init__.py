"""Persistent state: the SQL store (:mod:`burst.store.sql`), the in-memory store
(:mod:`burst.store.memory`) and the Alembic migrations. The contract is :class:`burst.ports.Store`."""
