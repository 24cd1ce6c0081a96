"""Idempotency keys: the commands applied under an ``x-cos-idempotency-key``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keys are scoped per entity: the same key may be used on two entities. A row is
    # written in the transaction of the command's events (or alone for a no-op command),
    # and holds no reply: the reply is rebuilt from the journal's event at ``revision``.
    op.execute(
        """
        CREATE TABLE cos_idempotency (
            entity_id    text        NOT NULL,
            key          text        NOT NULL,
            command_hash bytea       NOT NULL,
            revision     bigint      NOT NULL,
            created_at   timestamptz NOT NULL,
            PRIMARY KEY (entity_id, key)
        )
        """
    )
    # For the expiry sweep (oldest first, in bounded batches).
    op.execute("CREATE INDEX cos_idempotency_created_at ON cos_idempotency (created_at)")
    # A keyed append is one statement (cos/postgres/journal.py): when one of its keys is
    # already recorded, this fails the statement, so none of its events are written.
    op.execute(
        """
        CREATE FUNCTION cos_idempotency_key_taken() RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                MESSAGE = 'an idempotency key of this write is already recorded for its entity';
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION cos_idempotency_key_taken()")
    op.execute("DROP TABLE cos_idempotency")
