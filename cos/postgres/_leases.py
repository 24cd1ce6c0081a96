"""Shard leases in PostgreSQL (:class:`cos.storage.LeaseStore`), in the table
whose epoch every journal append checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cos.postgres._database import DatabaseTarget
from cos.postgres._datastore import PostgresDatastore
from cos.postgres._settings import PoolLimits
from cos.storage import Heartbeat, Lease, Standing

# An upsert that bumps the epoch. It waits for an in-flight append of the old owner
# (which holds the row lock until it commits), so the fence is exact.
_ACQUIRE = """
INSERT INTO cos_shard_leases (shard, owner, epoch)
SELECT shard, $2, 1 FROM unnest($1::int[]) AS shard
ON CONFLICT (shard) DO UPDATE
SET owner = EXCLUDED.owner, epoch = cos_shard_leases.epoch + 1, acquired_at = now()
RETURNING shard, epoch
"""

# Taken only from the epoch that was read: a shard someone else took since is left alone.
_TAKE_OVER = """
UPDATE cos_shard_leases AS l
SET owner = $3, epoch = l.epoch + 1, acquired_at = now()
FROM unnest($1::int[], $2::bigint[]) AS t(shard, epoch)
WHERE l.shard = t.shard AND l.epoch = t.epoch
RETURNING l.shard, l.epoch
"""

_HEARTBEAT = """
INSERT INTO cos_hosts (host_id, address) VALUES ($1, $2)
ON CONFLICT (host_id) DO UPDATE SET address = EXCLUDED.address, heartbeat_at = now()
"""

_LIVE = """
SELECT host_id, address FROM cos_hosts
WHERE starts_with(host_id, $1) AND heartbeat_at > now() - make_interval(secs => $2)
"""

# Every row of the runtime, fresh or stale: the age, by the database's clock, tells which.
_HEARTBEATS = """
SELECT host_id, address, heartbeat_at,
       greatest(extract(epoch FROM now() - heartbeat_at), 0)::float8 AS age
FROM cos_hosts WHERE starts_with(host_id, $1) ORDER BY host_id
"""


class PostgresLeaseStore:
    """:class:`cos.storage.LeaseStore` on ``cos_shard_leases``."""

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

    async def heartbeat(self, host_id: str, address: str) -> None:
        """Renew the host's heartbeat."""
        async with self._datastore.errors("cannot renew the host's heartbeat"):
            await self._datastore.pool.execute(_HEARTBEAT, host_id, address)

    async def forget_host(self, host_id: str) -> None:
        """Drop the host's heartbeat."""
        async with self._datastore.errors("cannot drop the host's heartbeat"):
            await self._datastore.pool.execute("DELETE FROM cos_hosts WHERE host_id = $1", host_id)

    async def heartbeats(self, host_prefix: str) -> list[Heartbeat]:
        """The heartbeat rows of a runtime's hosts (``host_prefix``), by host id."""
        async with self._datastore.errors("cannot read host heartbeats"):
            rows = await self._datastore.pool.fetch(_HEARTBEATS, host_prefix)
        return [
            Heartbeat(str(r["host_id"]), str(r["address"]), r["heartbeat_at"], float(r["age"]))
            for r in rows
        ]

    async def standing(self, host_prefix: str, timeout: float) -> Standing:
        """The live hosts of a runtime and every shard lease, read in one transaction."""
        async with (
            self._datastore.errors("cannot read host heartbeats"),
            self._datastore.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            live = await conn.fetch(_LIVE, host_prefix, timeout)
            leases = await conn.fetch("SELECT shard, owner, epoch FROM cos_shard_leases")
        return Standing(
            {str(r["host_id"]): str(r["address"]) for r in live},
            [Lease(int(r["shard"]), str(r["owner"]), int(r["epoch"])) for r in leases],
        )

    async def take_over(self, expected: Mapping[int, int], owner: str) -> dict[int, int]:
        """Take the leases that still have the epochs read."""
        shards = sorted(expected)
        async with self._datastore.errors("cannot take shard leases over"):
            rows = await self._datastore.pool.fetch(
                _TAKE_OVER, shards, [expected[s] for s in shards], owner
            )
        return {int(row["shard"]): int(row["epoch"]) for row in rows}


async def read_leases(target: DatabaseTarget) -> list[Lease]:
    """Every shard lease, over a pool of its own (the coordinator reads them once, when
    it starts or restarts)."""
    datastore = await PostgresDatastore.open(target, PoolLimits(max_size=2))
    try:
        return await PostgresLeaseStore(datastore).leases()
    finally:
        await datastore.close()
