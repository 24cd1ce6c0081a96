"""Read-side offsets and paused flags.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # position = the last journal position of the shard delivered to the read
    # side (0 = nothing yet). Kept here, not in memory, so pause, skip and
    # restart survive restarts of any process.
    op.execute(
        """
        CREATE TABLE cos_read_side_offsets (
            read_side_id text        NOT NULL,
            shard        integer     NOT NULL,
            position     bigint      NOT NULL DEFAULT 0,
            paused       boolean     NOT NULL DEFAULT false,
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (read_side_id, shard)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE cos_read_side_offsets")
