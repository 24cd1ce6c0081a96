"""Alembic environment: runs on the connection handed over by cos.postgres.migrate."""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]

context.configure(
    connection=connection,
    target_metadata=None,
    version_table="cos_alembic_version",
    version_table_schema=schema,
)
with context.begin_transaction():
    context.run_migrations()
