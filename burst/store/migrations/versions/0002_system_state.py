"""placeholder: replaced at merge by wp-seams' 0002.

A no-op revision so that 0003 (grand challenges) has its parent on this branch. The lead drops
this file when merging the real 0002 from the wp-seams branch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder: replaced at merge by wp-seams' 0002


def downgrade() -> None:
    pass  # placeholder: replaced at merge by wp-seams' 0002
