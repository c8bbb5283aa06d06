"""Fenced leadership (issue 14): the lease row carries an ``epoch``, a fencing token that grows
by one each time the lease changes hands; every write that leads to a cloud or scheduler action
checks it (:meth:`burst.ports.Store.try_acquire_lease`).

A lease row that exists already gets epoch 1 (its holder acquired it once); the column's server
default is dropped again so the schema matches the models exactly (``tests/store/test_migrations.py``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("leases", sa.Column("epoch", sa.Integer(), nullable=False, server_default=sa.text("1")))
    with op.batch_alter_table("leases") as batch:
        batch.alter_column("epoch", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("epoch")
