"""The tests' PostgreSQL: found or embedded, a schema per test, the variables that name it."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path

import asyncpg

from cos.postgres import DatabaseTarget, EmbeddedPostgres


async def _reachable(target: DatabaseTarget) -> bool:
    try:
        conn = await asyncpg.connect(**{**target.connect_kwargs(), "timeout": 3})
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        return False
    await conn.close()
    return True


def find_database() -> tuple[DatabaseTarget, EmbeddedPostgres | None]:
    """COS_TEST_DATABASE_URL, else 127.0.0.1:5432 (postgres), else an embedded server."""
    url = os.environ.get("COS_TEST_DATABASE_URL")
    if url:
        return DatabaseTarget.from_url(url), None
    local = DatabaseTarget("127.0.0.1", 5432, "postgres", "postgres", "public")
    if asyncio.run(_reachable(local)):
        return local, None
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="cos-pg-")))
    return DatabaseTarget.from_url(embedded.start()), embedded


def new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


async def drop_schema(target: DatabaseTarget) -> None:
    conn = await asyncpg.connect(**target.connect_kwargs())
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
    finally:
        await conn.close()


def db_env(target: DatabaseTarget) -> dict[str, str]:
    return {
        "COS_DB_HOST": target.host,
        "COS_DB_PORT": str(target.port),
        "COS_DB_USER": target.user,
        "COS_DB_PASSWORD": target.password,
        "COS_DB_NAME": target.database,
        "COS_DB_SCHEMA": target.schema,
    }
