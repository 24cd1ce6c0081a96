"""Apply the alembic migrations in ``migrations/`` to a database schema."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import migrations
from cos.errors import StartupError
from cos.postgres._database import DatabaseTarget


class MigrationError(StartupError):
    """The schema could not be brought up to date (e.g. no right to create it)."""


def _alembic_config(schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["schema"] = schema
    return config


def _upgrade(connection: Connection, config: Config, schema: str) -> None:
    # Nodes booting together would race on CREATE SCHEMA and the version
    # table; a session advisory lock per schema lets exactly one migrate.
    key = {"key": f"cos-migrate:{schema}"}
    connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
    try:
        connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        connection.commit()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
        connection.commit()


async def migrate(target: DatabaseTarget) -> None:
    """Bring ``target.schema`` to the newest revision; safe to run from many nodes at once."""
    kwargs = target.connect_kwargs()
    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=lambda: asyncpg.connect(**kwargs),
        poolclass=NullPool,
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade, _alembic_config(target.schema), target.schema)
    except (DBAPIError, asyncpg.PostgresError) as exc:
        cause = getattr(exc, "orig", None) or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise MigrationError(
            f"migrating schema {target.schema!r} (COS_DB_SCHEMA) as {target.user!r} failed: {first}"
        ) from exc
    finally:
        await engine.dispose()
