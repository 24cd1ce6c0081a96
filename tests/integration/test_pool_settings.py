"""The COS_DB_POOL_* settings on the journal's asyncpg pool, against real PostgreSQL."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from cos.postgres import DatabaseTarget, PoolLimits, PostgresDatastore


async def backend_pids(store: PostgresDatastore, count: int) -> set[int]:
    """The server processes of ``count`` connections held at once."""
    async with AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(store.pool.acquire()) for _ in range(count)]
        return {int(await c.fetchval("SELECT pg_backend_pid()")) for c in connections}


async def test_connections_are_renewed_after_their_lifetime(database: DatabaseTarget) -> None:
    store = await PostgresDatastore.open(
        database, PoolLimits(max_size=2, min_size=2, max_lifetime=0.5)
    )
    try:
        assert store.pool.get_size() == 2  # COS_DB_POOL_MIN_IDLE_CONNECTIONS, opened at once
        before = await backend_pids(store, 2)
        assert before == await backend_pids(store, 2)  # reused while young
        await asyncio.sleep(1.2)
        after = await backend_pids(store, 2)
        assert len(after) == 2 and before.isdisjoint(after)
    finally:
        await store.close()


async def test_idle_connections_beyond_the_minimum_are_closed(database: DatabaseTarget) -> None:
    store = await PostgresDatastore.open(
        database, PoolLimits(max_size=3, min_size=1, idle_timeout=0.3)
    )
    try:
        assert len(await backend_pids(store, 3)) == 3
        assert store.pool.get_size() == 3
        await asyncio.sleep(1.0)
        assert store.pool.get_size() == 1
    finally:
        await store.close()
