"""The shard count is recorded with the journal and a node with another count is refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from cos.postgres import DatabaseTarget, ShardCountError, pin_shard_count


async def test_the_first_count_is_recorded_and_another_is_refused(
    database: DatabaseTarget, db: asyncpg.Connection
) -> None:
    await pin_shard_count(database, 16)
    await pin_shard_count(database, 16)
    with pytest.raises(ShardCountError) as refused:
        await pin_shard_count(database, 8)
    message = str(refused.value)
    assert f"schema {database.schema!r}" in message
    assert "COS_NUM_SHARDS=16" in message and "this node has 8" in message
    value = await db.fetchval("SELECT value FROM cos_runtime_settings WHERE name = 'num_shards'")
    assert value == "16"


async def test_a_journal_written_before_the_record_is_judged_by_its_leases(
    database: DatabaseTarget, db: asyncpg.Connection
) -> None:
    await db.executemany(
        "INSERT INTO cos_shard_leases (shard, owner, epoch) VALUES ($1, 'old-host', 1)",
        [(shard,) for shard in range(4)],
    )
    with pytest.raises(ShardCountError, match="COS_NUM_SHARDS=4; this node has 16"):
        await pin_shard_count(database, 16)
    await pin_shard_count(database, 4)


async def test_nodes_starting_together_with_different_counts_agree_on_one(
    database: DatabaseTarget,
) -> None:
    counts = [4, 8, 4, 8, 4, 8]
    results = await asyncio.gather(
        *(pin_shard_count(database, n) for n in counts), return_exceptions=True
    )
    accepted = {n for n, result in zip(counts, results, strict=True) if result is None}
    refused = {n for n, result in zip(counts, results, strict=True) if result is not None}
    assert len(accepted) == 1 and accepted | refused == {4, 8}, results
    assert all(isinstance(r, ShardCountError) for r in results if r is not None)
