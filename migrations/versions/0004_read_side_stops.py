"""Why a read side stopped in a shard, for operators (cos-cli readside status).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Set when a failure policy stops the runner at an event (NULL while it runs), so
    # any node can show it; an operator's pause, resume, skip or restart clears it.
    op.execute("ALTER TABLE cos_read_side_offsets ADD COLUMN stopped_reason text")


def downgrade() -> None:
    op.execute("ALTER TABLE cos_read_side_offsets DROP COLUMN stopped_reason")
