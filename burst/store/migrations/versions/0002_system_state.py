"""System state out of the user-settings table: orphan sightings and the controller's status.

Before this revision the controller kept both in ``user_settings`` under the magic users
``_orphans`` (cloud id -> first time seen, as text) and ``_controller`` (``last_tick``, a JSON
text). They get tables of their own; the upgrade moves existing rows across (so a running
deployment keeps its orphans' grace periods) and the downgrade moves them back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORPHANS_USER = "_orphans"
STATUS_USER, STATUS_KEY, STATUS_NAME = "_controller", "last_tick", "controller_status"

_settings = sa.table(
    "user_settings",
    sa.column("user", sa.String()),
    sa.column("key", sa.String()),
    sa.column("value", sa.Text()),
    sa.column("updated_at", sa.Double()),
)
_orphans = sa.table("orphan_sightings", sa.column("cloud_id", sa.String()), sa.column("first_seen", sa.Double()))
_state = sa.table(
    "system_state", sa.column("name", sa.String()), sa.column("value", sa.JSON()), sa.column("updated_at", sa.Double())
)


def upgrade() -> None:
    op.create_table(
        "orphan_sightings",
        sa.Column("cloud_id", sa.String(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("cloud_id", name="pk_orphan_sightings"),
    )
    op.create_table(
        "system_state",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_system_state"),
    )
    conn = op.get_bind()
    orphans = []
    for cloud_id, value, at in conn.execute(
        sa.select(_settings.c.key, _settings.c.value, _settings.c.updated_at).where(_settings.c.user == ORPHANS_USER)
    ):
        try:
            orphans.append({"cloud_id": cloud_id, "first_seen": float(value)})
        except ValueError:
            orphans.append({"cloud_id": cloud_id, "first_seen": at})  # unreadable: its write time
    if orphans:
        conn.execute(sa.insert(_orphans), orphans)
    status = conn.execute(
        sa.select(_settings.c.value, _settings.c.updated_at).where(
            _settings.c.user == STATUS_USER, _settings.c.key == STATUS_KEY
        )
    ).first()
    if status is not None:
        try:
            summary = json.loads(status[0])
        except ValueError:
            summary = None
        if isinstance(summary, dict):
            conn.execute(sa.insert(_state).values(name=STATUS_NAME, value=summary, updated_at=status[1]))
    conn.execute(sa.delete(_settings).where(_settings.c.user.in_([ORPHANS_USER, STATUS_USER])))


def downgrade() -> None:
    conn = op.get_bind()
    rows = [
        {"user": ORPHANS_USER, "key": cloud_id, "value": repr(first), "updated_at": first}
        for cloud_id, first in conn.execute(sa.select(_orphans.c.cloud_id, _orphans.c.first_seen))
    ]
    status = conn.execute(
        sa.select(_state.c.value, _state.c.updated_at).where(_state.c.name == STATUS_NAME)
    ).first()
    if status is not None:
        rows.append({"user": STATUS_USER, "key": STATUS_KEY, "value": json.dumps(status[0]), "updated_at": status[1]})
    if rows:
        conn.execute(sa.insert(_settings), rows)
    op.drop_table("system_state")
    op.drop_table("orphan_sightings")
