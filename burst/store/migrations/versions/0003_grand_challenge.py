"""Grand challenges that really run (issue 10): node count, job spec, owner, challenge job id,
reservation, the preempted jobs with their priority and queue order, notices sent, phase times,
``burst_preempted`` and the ending.

``preempted_jobs`` changes shape from a JSON list of job ids to a JSON list of objects (one per
:class:`burst.domain.PreemptedJob`); rows written before this revision are converted (no
priority was ever recorded: 0, in their stored order). Phase ``preempted`` is renamed
``preempting``. New columns are added with a server default for existing rows, which is then
dropped so the schema matches the models exactly (``tests/store/test_migrations.py``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "grand_challenges"

# name, type, server default for rows that exist already
_COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("nodes", sa.Integer(), "0"),
    ("job_kind", sa.String(), "slurm"),
    ("job_path", sa.Text(), ""),
    ("job_text", sa.Text(), ""),
    ("owner", sa.String(), ""),
    ("challenge_job_id", sa.String(), ""),
    ("reservation", sa.String(), ""),
    ("node_names", sa.JSON(), "[]"),
    ("reserved", sa.Boolean(), "false"),
    ("notices", sa.JSON(), "[]"),
    ("phases", sa.JSON(), "[]"),
    ("burst_preempted", sa.Boolean(), "false"),
    ("ending", sa.String(), "done"),
    ("last_error", sa.Text(), ""),
)


def _rows(conn: sa.Connection) -> list[tuple[str, Any, str]]:
    t = sa.table(TABLE, sa.column("id", sa.String()), sa.column("preempted_jobs", sa.JSON()),
                 sa.column("state", sa.String()))
    return [(r.id, r.preempted_jobs, r.state) for r in conn.execute(sa.select(t.c.id, t.c.preempted_jobs, t.c.state))]


def _write(conn: sa.Connection, cid: str, jobs: list[Any], state: str) -> None:
    t = sa.table(TABLE, sa.column("id", sa.String()), sa.column("preempted_jobs", sa.JSON()),
                 sa.column("state", sa.String()))
    conn.execute(sa.update(t).where(t.c.id == cid).values(preempted_jobs=jobs, state=state))


def _loads(v: Any) -> list[Any]:
    if isinstance(v, str):
        v = json.loads(v)
    return list(v or [])


def upgrade() -> None:
    for name, typ, default in _COLUMNS:
        op.add_column(TABLE, sa.Column(name, typ, nullable=False, server_default=sa.text(
            f"'{default}'" if not isinstance(typ, sa.Integer | sa.Boolean) else default)))
    with op.batch_alter_table(TABLE) as batch:
        for name, _typ, _default in _COLUMNS:
            batch.alter_column(name, server_default=None)
    conn = op.get_bind()
    for cid, jobs, state in _rows(conn):
        new = [
            j if isinstance(j, dict) else {"job_id": str(j), "user": "", "gpus": 0, "priority": 0, "order": k,
                                           "may_burst": False, "released_at": None, "restored": False}
            for k, j in enumerate(_loads(jobs))
        ]
        _write(conn, cid, new, "preempting" if state == "preempted" else state)


def downgrade() -> None:
    conn = op.get_bind()
    for cid, jobs, state in _rows(conn):
        ids = [j["job_id"] if isinstance(j, dict) else str(j) for j in _loads(jobs)]
        _write(conn, cid, ids, "preempted" if state == "preempting" else state)
    with op.batch_alter_table(TABLE) as batch:
        for name, _typ, _default in reversed(_COLUMNS):
            batch.drop_column(name)
