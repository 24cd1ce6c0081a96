"""Settings the journal was written with (the shard count).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Settings that must never change for a journal once written, recorded by
    # the first node that serves it (cos.postgres.layout).
    op.execute(
        """
        CREATE TABLE cos_runtime_settings (
            name       text        PRIMARY KEY,
            value      text        NOT NULL,
            set_at     timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE cos_runtime_settings")
