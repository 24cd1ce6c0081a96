"""The shard count a journal is written with, recorded once and checked on every start.

The shard count decides which shard, and so which journal order and which read-side
runner, every entity belongs to. Changing it on a written journal would move entities
between shards and break per-entity delivery order, so a node with another count is
refused.
"""

from __future__ import annotations

import asyncpg

from cos.errors import StartupError
from cos.postgres._database import DatabaseTarget


class ShardCountError(StartupError):
    """The node's COS_NUM_SHARDS differs from the one the journal was written with."""


async def pin_shard_count(target: DatabaseTarget, num_shards: int) -> None:
    """Record ``num_shards`` for the journal, or check it against the recorded one."""
    conn = await asyncpg.connect(**target.connect_kwargs())
    try:
        async with conn.transaction():
            recorded = await conn.fetchval(
                "SELECT value FROM cos_runtime_settings WHERE name = 'num_shards'"
            )
            if recorded is None:
                # A journal from before this table: every shard got a lease at its first start.
                highest = await conn.fetchval("SELECT max(shard) FROM cos_shard_leases")
                first = num_shards if highest is None else highest + 1
                await conn.execute(
                    "INSERT INTO cos_runtime_settings (name, value) VALUES ('num_shards', $1)"
                    " ON CONFLICT (name) DO NOTHING",
                    str(first),
                )
                recorded = await conn.fetchval(
                    "SELECT value FROM cos_runtime_settings WHERE name = 'num_shards'"
                )
    finally:
        await conn.close()
    if int(recorded) != num_shards:
        raise ShardCountError(
            f"the journal in schema {target.schema!r} was written with COS_NUM_SHARDS={recorded};"
            f" this node has {num_shards}. The shard count of a journal cannot change: it decides"
            " the shard, and so the event order, of every entity"
        )
