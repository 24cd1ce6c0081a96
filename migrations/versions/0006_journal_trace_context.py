"""The trace context of the command that wrote each event, for read-side delivery spans.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The W3C ``traceparent`` of the command's span (NULL when it was not traced): each
    # read-side delivery of the event links to it. A column, not a header in the stored
    # meta, so what handlers and clients see in ``meta.headers`` stays what they asked for.
    op.execute("ALTER TABLE cos_journal ADD COLUMN trace_context text")


def downgrade() -> None:
    op.execute("ALTER TABLE cos_journal DROP COLUMN trace_context")
