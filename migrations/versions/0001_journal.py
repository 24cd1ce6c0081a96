"""Journal, snapshots and shard leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Positions are per shard and gap-free: the shard's lease row hands them out
    # inside the writing transaction (see PostgresJournalStore.append).
    op.execute(
        """
        CREATE TABLE cos_journal (
            shard       integer     NOT NULL,
            position    bigint      NOT NULL,
            entity_id   text        NOT NULL,
            revision    bigint      NOT NULL,
            event_type  text        NOT NULL,
            created_at  timestamptz NOT NULL,
            deleted     boolean     NOT NULL DEFAULT false,
            payload     bytea       NOT NULL,
            PRIMARY KEY (shard, position),
            CONSTRAINT cos_journal_entity_revision UNIQUE (entity_id, revision)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE cos_snapshots (
            entity_id   text        NOT NULL,
            revision    bigint      NOT NULL,
            created_at  timestamptz NOT NULL,
            payload     bytea       NOT NULL,
            PRIMARY KEY (entity_id, revision)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE cos_shard_leases (
            shard         integer     PRIMARY KEY,
            owner         text        NOT NULL,
            epoch         bigint      NOT NULL,
            last_position bigint      NOT NULL DEFAULT 0,
            acquired_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE cos_shard_leases")
    op.execute("DROP TABLE cos_snapshots")
    op.execute("DROP TABLE cos_journal")
