"""Initial schema: instances, audit, spend ledger, offer backoffs, on-demand requests, grand
challenges, mirrors, user settings, leases and budget locks.

Written by hand against ``burst/store/models.py``; ``tests/store/test_migrations.py`` checks that
the two agree on SQLite and PostgreSQL. Timestamps are POSIX seconds (DOUBLE PRECISION), enums are
their string values, tuples and audit data are JSON.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.String(), nullable=False)


def _text(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Text(), nullable=False)


def _time(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.Double(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "instances",
        _str("id"),
        _str("cloud"),
        _str("region"),
        _str("zone"),
        _str("instance_type"),
        _str("market"),
        _str("purpose"),
        sa.Column("gpus", sa.Integer(), nullable=False),
        _str("gpu_model"),
        sa.Column("price_per_hour", sa.Double(), nullable=False),
        _str("state"),
        _str("owner"),
        _str("team"),
        _str("cloud_id"),
        _time("created_at"),
        _time("launched_at", nullable=True),
        _time("joined_at", nullable=True),
        _time("terminated_at", nullable=True),
        _time("idle_since", nullable=True),
        _str("node_name"),
        sa.Column("for_jobs", sa.JSON(), nullable=False),
        _str("gang_id"),
        _str("request_id"),
        _time("expires_at", nullable=True),
        _str("image"),
        _str("address"),
        _text("last_error"),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )
    op.create_index("ix_instances_state", "instances", ["state"])
    op.create_index("ix_instances_created_at", "instances", ["created_at"])

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _time("at"),
        _str("actor"),
        _str("kind"),
        _str("subject"),
        _str("action"),
        _text("reason"),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_subject", "audit", ["subject"])
    op.create_index("ix_audit_kind", "audit", ["kind"])

    op.create_table(
        "spend_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _str("instance_id"),
        _str("cloud"),
        _str("region"),
        _str("purpose"),
        _str("team"),
        _str("owner"),
        _time("start_at"),
        _time("end_at"),
        sa.Column("usd", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_spend_ledger"),
        sa.UniqueConstraint("instance_id", name="uq_spend_ledger_instance_id"),
    )
    op.create_index("ix_spend_ledger_end_at", "spend_ledger", ["end_at"])

    op.create_table(
        "offer_backoffs",
        _str("offer_key"),
        sa.Column("failures", sa.Integer(), nullable=False),
        _time("until"),
        _text("last_error"),
        sa.PrimaryKeyConstraint("offer_key", name="pk_offer_backoffs"),
    )

    op.create_table(
        "ondemand_requests",
        _str("id"),
        _str("user"),
        _str("team"),
        sa.Column("gpus", sa.Integer(), nullable=False),
        _str("gpu_model"),
        sa.Column("hours", sa.Double(), nullable=False),
        _str("state"),
        _str("cloud"),
        _str("region"),
        sa.Column("spot", sa.Boolean(), nullable=False),
        _text("note"),
        _time("created_at"),
        _time("expires_at", nullable=True),
        _str("instance_id"),
        _str("approver"),
        sa.PrimaryKeyConstraint("id", name="pk_ondemand_requests"),
    )
    op.create_index("ix_ondemand_requests_user", "ondemand_requests", ["user"])
    op.create_index("ix_ondemand_requests_state", "ondemand_requests", ["state"])

    op.create_table(
        "grand_challenges",
        _str("id"),
        _str("name"),
        _time("start_at"),
        sa.Column("duration_s", sa.Double(), nullable=False),
        _text("command"),
        _str("created_by"),
        _str("state"),
        _text("note"),
        sa.Column("preempted_jobs", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grand_challenges"),
    )
    op.create_index("ix_grand_challenges_state", "grand_challenges", ["state"])

    op.create_table(
        "mirrors",
        _str("image"),
        _str("target"),
        _str("digest"),
        _time("at"),
        sa.PrimaryKeyConstraint("image", "target", name="pk_mirrors"),
    )

    op.create_table(
        "user_settings",
        _str("user"),
        _str("key"),
        _text("value"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("user", "key", name="pk_user_settings"),
    )

    op.create_table(
        "leases",
        _str("name"),
        _str("holder"),
        _time("expires_at"),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )

    op.create_table(
        "budget_locks",
        _str("scope"),
        sa.PrimaryKeyConstraint("scope", name="pk_budget_locks"),
    )


def downgrade() -> None:
    op.drop_table("budget_locks")
    op.drop_table("leases")
    op.drop_table("user_settings")
    op.drop_table("mirrors")
    op.drop_index("ix_grand_challenges_state", table_name="grand_challenges")
    op.drop_table("grand_challenges")
    op.drop_index("ix_ondemand_requests_state", table_name="ondemand_requests")
    op.drop_index("ix_ondemand_requests_user", table_name="ondemand_requests")
    op.drop_table("ondemand_requests")
    op.drop_table("offer_backoffs")
    op.drop_index("ix_spend_ledger_end_at", table_name="spend_ledger")
    op.drop_table("spend_ledger")
    op.drop_index("ix_audit_kind", table_name="audit")
    op.drop_index("ix_audit_subject", table_name="audit")
    op.drop_table("audit")
    op.drop_index("ix_instances_created_at", table_name="instances")
    op.drop_index("ix_instances_state", table_name="instances")
    op.drop_table("instances")
