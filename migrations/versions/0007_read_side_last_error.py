"""The last delivery failure of each read side in each shard, for operators.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by the shard's runner when a delivery fails (at most about once a second
    # while it retries), so any node can show it (cos-cli readside status). Unlike
    # stopped_reason, neither a later success nor an operator action clears it: it says
    # what went wrong last, and when, after delivery has recovered too.
    op.execute(
        "ALTER TABLE cos_read_side_offsets"
        " ADD COLUMN last_error text, ADD COLUMN last_error_at timestamptz"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE cos_read_side_offsets DROP COLUMN last_error, DROP COLUMN last_error_at"
    )
