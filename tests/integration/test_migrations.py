"""Alembic migrations: concurrent boots, idempotence."""

from __future__ import annotations

import asyncio

import asyncpg

from cos.postgres import DatabaseTarget, migrate
from tests.support.database import drop_schema, new_schema_name


async def test_nodes_migrating_at_once_all_succeed(database_server: DatabaseTarget) -> None:
    target = database_server.with_schema(new_schema_name())
    try:
        await asyncio.gather(*(migrate(target) for _ in range(4)))
        await migrate(target)
        conn = await asyncpg.connect(**target.connect_kwargs())
        try:
            versions = await conn.fetch("SELECT version_num FROM cos_alembic_version")
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                target.schema,
            )
        finally:
            await conn.close()
        assert [row["version_num"] for row in versions] == ["0008"]
        assert {row["table_name"] for row in tables} >= {
            "cos_journal",
            "cos_snapshots",
            "cos_shard_leases",
            "cos_read_side_offsets",
            "cos_runtime_settings",
        }
    finally:
        await drop_schema(target)
