"""Host heartbeats: shards move by their leases when Ray's head, and the coordinator, is down.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each shard host renews its row every second or so (the database's clock decides
    # what is stale); a host whose row is older than COS_HOST_FAILURE_TIMEOUT_SECONDS has
    # its shards taken over by the live hosts when no coordinator does it.
    op.execute(
        """
        CREATE TABLE cos_hosts (
            host_id       text PRIMARY KEY,
            address       text NOT NULL,
            heartbeat_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE cos_hosts")
