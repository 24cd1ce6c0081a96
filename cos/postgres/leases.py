"""Shard leases in PostgreSQL (:class:`cos.sharding.leases.LeaseStore`), in the table
whose epoch every journal append checks."""

from __future__ import annotations

from collections.abc import Sequence

from cos.postgres.database import DatabaseTarget
from cos.postgres.datastore import PoolLimits, PostgresDatastore
from cos.sharding.leases import Lease

# An upsert that bumps the epoch. It waits for an in-flight append of the old owner
# (which holds the row lock until it commits), so the fence is exact.
_ACQUIRE = """
INSERT INTO cos_shard_leases (shard, owner, epoch)
SELECT shard, $2, 1 FROM unnest($1::int[]) AS shard
ON CONFLICT (shard) DO UPDATE
SET owner = EXCLUDED.owner, epoch = cos_shard_leases.epoch + 1, acquired_at = now()
RETURNING shard, epoch
"""


class PostgresLeaseStore:
    """:class:`cos.sharding.leases.LeaseStore` on ``cos_shard_leases``."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore

    async def acquire_shards(self, shards: Sequence[int], owner: str) -> dict[int, int]:
        """Take each shard's lease for ``owner`` with a higher epoch than any before."""
        async with self._datastore.errors("cannot take shard leases"):
            rows = await self._datastore.pool.fetch(_ACQUIRE, list(shards), owner)
        return {int(row["shard"]): int(row["epoch"]) for row in rows}

    async def leases(self) -> list[Lease]:
        """Every shard lease."""
        async with self._datastore.errors("cannot read shard leases"):
            rows = await self._datastore.pool.fetch(
                "SELECT shard, owner, epoch FROM cos_shard_leases"
            )
        return [Lease(int(r["shard"]), str(r["owner"]), int(r["epoch"])) for r in rows]


async def read_leases(target: DatabaseTarget) -> list[Lease]:
    """Every shard lease, over a pool of its own (the coordinator reads them once, when
    it starts or restarts)."""
    datastore = await PostgresDatastore.open(target, PoolLimits(max_size=2))
    try:
        return await PostgresLeaseStore(datastore).leases()
    finally:
        await datastore.close()
