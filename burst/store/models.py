"""SQLAlchemy 2.0 typed ORM models behind :class:`burst.store.sql.SqlStore`.

Conventions, chosen to match :mod:`burst.domain` exactly:

* Timestamps are POSIX seconds in ``DOUBLE PRECISION`` columns (``Double``), like ``Timestamp``.
* Enums are stored as their string values (``String``), so adding a state needs no migration.
* Tuples of ids (``for_jobs``, ``preempted_jobs``) and audit ``data`` are JSON.
* Constraint and index names come from :data:`NAMING_CONVENTION`, so the hand-written migration
  (``migrations/versions/``) names them identically.

Any change here needs a new Alembic revision; ``tests/store/test_migrations.py`` compares these
models with the migrated schema on SQLite and PostgreSQL and fails on any difference.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Double, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        float: Double(),
        str: String(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        list[Any]: JSON(),
    }


class InstanceRow(Base):
    """One row per intent (:class:`burst.domain.Instance`); ``id`` is the deterministic intent id."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(primary_key=True)
    cloud: Mapped[str]
    region: Mapped[str]
    zone: Mapped[str]
    instance_type: Mapped[str]
    market: Mapped[str]
    purpose: Mapped[str]
    gpus: Mapped[int]
    gpu_model: Mapped[str]
    price_per_hour: Mapped[float]
    state: Mapped[str]
    owner: Mapped[str]
    team: Mapped[str]
    cloud_id: Mapped[str]
    created_at: Mapped[float]
    launched_at: Mapped[float | None]
    joined_at: Mapped[float | None]
    terminated_at: Mapped[float | None]
    idle_since: Mapped[float | None]
    node_name: Mapped[str]
    for_jobs: Mapped[list[str]]
    gang_id: Mapped[str]
    request_id: Mapped[str]
    expires_at: Mapped[float | None]
    image: Mapped[str]
    address: Mapped[str]
    last_error: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index(None, "state"),
        Index(None, "created_at"),
    )


class AuditModel(Base):
    """Append-only audit trail (:class:`burst.ports.AuditRow`). Newest first is ``id DESC``."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float]
    actor: Mapped[str]
    kind: Mapped[str]
    subject: Mapped[str]
    action: Mapped[str]
    reason: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]

    __table_args__ = (
        Index(None, "subject"),
        Index(None, "kind"),
    )


class SpendLedgerRow(Base):
    """One row per terminated instance (:class:`burst.ports.SpendEntry`)."""

    __tablename__ = "spend_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str]
    cloud: Mapped[str]
    region: Mapped[str]
    purpose: Mapped[str]
    team: Mapped[str]
    owner: Mapped[str]
    start_at: Mapped[float]
    end_at: Mapped[float]
    usd: Mapped[float]

    __table_args__ = (
        UniqueConstraint("instance_id"),
        Index(None, "end_at"),
    )


class OfferBackoffRow(Base):
    """Cool-down of one offer (:class:`burst.ports.Backoff`)."""

    __tablename__ = "offer_backoffs"

    offer_key: Mapped[str] = mapped_column(primary_key=True)
    failures: Mapped[int]
    until: Mapped[float]
    last_error: Mapped[str] = mapped_column(Text)


class OnDemandRequestRow(Base):
    """:class:`burst.domain.OnDemandRequest`."""

    __tablename__ = "ondemand_requests"

    id: Mapped[str] = mapped_column(primary_key=True)
    user: Mapped[str]
    team: Mapped[str]
    gpus: Mapped[int]
    gpu_model: Mapped[str]
    hours: Mapped[float]
    state: Mapped[str]
    cloud: Mapped[str]
    region: Mapped[str]
    spot: Mapped[bool]
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float]
    expires_at: Mapped[float | None]
    instance_id: Mapped[str]
    approver: Mapped[str]

    __table_args__ = (
        Index(None, "user"),
        Index(None, "state"),
    )


class GrandChallengeRow(Base):
    """:class:`burst.domain.GrandChallenge`. ``preempted_jobs`` is a JSON list of objects (one per
    :class:`burst.domain.PreemptedJob`, in queue order); ``phases`` a JSON list of
    ``[state, entered_at]`` pairs. Columns after ``preempted_jobs`` came with migration 0003."""

    __tablename__ = "grand_challenges"

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    start_at: Mapped[float]
    duration_s: Mapped[float]
    command: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str]
    state: Mapped[str]
    note: Mapped[str] = mapped_column(Text)
    preempted_jobs: Mapped[list[Any]]
    nodes: Mapped[int] = mapped_column(Integer)
    job_kind: Mapped[str]
    job_path: Mapped[str] = mapped_column(Text)
    job_text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str]
    challenge_job_id: Mapped[str]
    reservation: Mapped[str]
    node_names: Mapped[list[str]]
    reserved: Mapped[bool] = mapped_column(Boolean)
    notices: Mapped[list[str]]
    phases: Mapped[list[Any]]
    burst_preempted: Mapped[bool] = mapped_column(Boolean)
    ending: Mapped[str]
    last_error: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index(None, "state"),)


class MirrorRow(Base):
    """Last successful copy of ``image`` into ``target`` (:class:`burst.ports.MirrorRecord`)."""

    __tablename__ = "mirrors"

    image: Mapped[str] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(primary_key=True)
    digest: Mapped[str]
    at: Mapped[float]


class UserSettingRow(Base):
    """Per-user settings (ssh public keys and the like)."""

    __tablename__ = "user_settings"

    user: Mapped[str] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float]


class LeaseRow(Base):
    """Leader-election lease: ``holder`` owns ``name`` until ``expires_at`` (wall time), under the
    fencing token ``epoch`` (migration 0004), which grows by one each time the lease changes hands."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(primary_key=True)
    holder: Mapped[str]
    expires_at: Mapped[float]
    epoch: Mapped[int] = mapped_column(Integer)


class BudgetLockRow(Base):
    """One row per budget scope, only ever locked (``SELECT ... FOR UPDATE``) to serialise the
    budget check and the intent insert of :meth:`SqlStore.create_intent`."""

    __tablename__ = "budget_locks"

    scope: Mapped[str] = mapped_column(primary_key=True)


class OrphanSightingRow(Base):
    """When the controller first saw a tagged cloud instance that the store does not know as live
    (:meth:`burst.ports.Store.orphan_first_seen`); its grace period counts from ``first_seen``."""

    __tablename__ = "orphan_sightings"

    cloud_id: Mapped[str] = mapped_column(primary_key=True)
    first_seen: Mapped[float]


class SystemStateRow(Base):
    """The controller's own state, one JSON document per name (``controller_status``: the last
    tick's summary, :meth:`burst.ports.Store.controller_status`)."""

    __tablename__ = "system_state"

    name: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[float]
