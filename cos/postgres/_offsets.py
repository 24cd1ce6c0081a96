"""Read-side offsets in PostgreSQL (:class:`cos.storage.OffsetStore`).

Operator changes also send a ``NOTIFY`` on :data:`CONTROL_CHANNEL` in the same
transaction, so the host running the shard's runner hears of them at once
(:mod:`cos.postgres.control` listens).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cos.postgres._datastore import PostgresDatastore
from cos.storage import LastError, Offset, ShardStatus

CONTROL_CHANNEL = "cos_read_side_control"

# Operator changes: $1 the read side, $2 the shards.
_SET_PAUSED = """
INSERT INTO cos_read_side_offsets (read_side_id, shard, paused)
SELECT $1, shard, $3 FROM unnest($2::int[]) AS shard
ON CONFLICT (read_side_id, shard) DO UPDATE
SET paused = EXCLUDED.paused, stopped_reason = NULL, updated_at = now()
"""
_RESTART = """
INSERT INTO cos_read_side_offsets (read_side_id, shard)
SELECT $1, shard FROM unnest($2::int[]) AS shard
ON CONFLICT (read_side_id, shard) DO UPDATE
SET position = 0, stopped_reason = NULL, updated_at = now()
"""
# The journal's positions are gap-free per shard, so "the next event" is position + 1.
_SKIP = """
UPDATE cos_read_side_offsets o
SET position = o.position + 1, stopped_reason = NULL, updated_at = now()
WHERE o.read_side_id = $1 AND o.shard = ANY($2::int[]) AND EXISTS (
    SELECT 1 FROM cos_journal j WHERE j.shard = o.shard AND j.position = o.position + 1)
"""

# One statement, so offset, journal head and lag are read at one instant. The lag is the
# age of the oldest undelivered event, the one at offset + 1 (positions are gap-free per
# shard), by the database's clock; none there means caught up. greatest(): an event
# stamped by a node whose clock runs ahead of the database's is not "in the future".
_STATUS = """
SELECT s.shard, coalesce(o.position, 0) AS position, coalesce(o.paused, false) AS paused,
       o.stopped_reason, o.last_error, o.last_error_at,
       coalesce(l.last_position, 0) AS journal_position,
       coalesce(greatest(extract(epoch FROM now() - j.created_at), 0), 0)::float8 AS lag
FROM unnest($2::int[]) AS s(shard)
LEFT JOIN cos_read_side_offsets o ON o.read_side_id = $1 AND o.shard = s.shard
LEFT JOIN cos_shard_leases l ON l.shard = s.shard
LEFT JOIN cos_journal j ON j.shard = s.shard AND j.position = coalesce(o.position, 0) + 1
"""
_RECORD_FAILURE = """
INSERT INTO cos_read_side_offsets (read_side_id, shard, last_error, last_error_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (read_side_id, shard) DO UPDATE
SET last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at
"""


class PostgresOffsetStore:
    """Offsets and paused flags; every change is durable when the call returns."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore
        self._pool = datastore.pool

    async def prepare(self, read_side_id: str, shards: Sequence[int], start_paused: bool) -> None:
        """Create missing rows. ``start_paused`` (autoStart=false) pauses every shard."""
        async with self._datastore.errors("cannot prepare read side offsets"):
            await self._pool.execute(
                """
                INSERT INTO cos_read_side_offsets (read_side_id, shard, paused)
                SELECT $1, shard, $3 FROM unnest($2::int[]) AS shard
                ON CONFLICT (read_side_id, shard) DO UPDATE
                SET paused = cos_read_side_offsets.paused OR EXCLUDED.paused
                """,
                read_side_id,
                list(shards),
                start_paused,
            )

    async def get(self, read_side_id: str, shard: int) -> Offset:
        """The offset of one shard (position 0, not paused, when it has no row yet)."""
        rows = await self.list(read_side_id, [shard])
        return rows[0]

    async def status(self, read_side_id: str, shards: Sequence[int]) -> list[ShardStatus]:
        """Offsets, journal heads, lags and last failures of ``shards``, in that order."""
        async with self._datastore.errors("cannot read read side status"):
            rows = await self._pool.fetch(_STATUS, read_side_id, list(shards))
        found = {int(r["shard"]): r for r in rows}
        return [_status(read_side_id, found[shard]) for shard in shards]

    async def list(self, read_side_id: str, shards: Sequence[int]) -> list[Offset]:
        """The offsets of ``shards``, in that order."""
        async with self._datastore.errors("cannot read read side offsets"):
            rows = await self._pool.fetch(
                "SELECT shard, position, paused, stopped_reason FROM cos_read_side_offsets "
                "WHERE read_side_id = $1 AND shard = ANY($2::int[])",
                read_side_id,
                list(shards),
            )
        found = {int(r["shard"]): r for r in rows}
        return [_offset(read_side_id, shard, found.get(shard)) for shard in shards]

    async def advance(self, read_side_id: str, shard: int, expected: int, position: int) -> bool:
        """Move the offset from ``expected`` to ``position``; False when an operator
        changed it meanwhile (then the runner re-reads instead of overwriting)."""
        async with self._datastore.errors("cannot store a read side offset"):
            status = await self._pool.execute(
                "UPDATE cos_read_side_offsets SET position = $4, updated_at = now() "
                "WHERE read_side_id = $1 AND shard = $2 AND position = $3",
                read_side_id,
                shard,
                expected,
                position,
            )
        return bool(status == "UPDATE 1")

    async def set_stopped(self, read_side_id: str, shard: int, reason: str | None) -> None:
        """Record why a failure policy stopped the runner of ``shard`` (None: it runs)."""
        async with self._datastore.errors(f"cannot record a stop of read side {read_side_id!r}"):
            await self._pool.execute(
                "UPDATE cos_read_side_offsets SET stopped_reason = $3, updated_at = now()"
                " WHERE read_side_id = $1 AND shard = $2",
                read_side_id,
                shard,
                reason,
            )

    async def record_failure(self, read_side_id: str, shard: int, text: str) -> None:
        """Keep ``text`` as the last delivery failure of ``shard``, at the database's now()."""
        async with self._datastore.errors(f"cannot record a failure of read side {read_side_id!r}"):
            await self._pool.execute(_RECORD_FAILURE, read_side_id, shard, text)

    async def set_paused(self, read_side_id: str, shards: Sequence[int], paused: bool) -> None:
        """Pause or resume ``shards``."""
        await self._control(_SET_PAUSED, read_side_id, shards, paused)

    async def restart(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Clear the offsets of ``shards``: delivery starts again from the first event."""
        await self._control(_RESTART, read_side_id, shards)

    async def skip(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Move past the event at the current offset of each shard, where there is one."""
        await self._control(_SKIP, read_side_id, shards)

    async def _control(
        self, sql: str, read_side_id: str, shards: Sequence[int], *args: object
    ) -> None:
        async with (
            self._datastore.errors(f"cannot change read side {read_side_id!r}"),
            self._pool.acquire() as conn,
            conn.transaction(),
        ):
            await conn.execute(sql, read_side_id, list(shards), *args)
            await conn.execute("SELECT pg_notify($1, $2)", CONTROL_CHANNEL, read_side_id)


def _offset(read_side_id: str, shard: int, row: asyncpg.Record | None) -> Offset:
    if row is None:  # no row yet: at the start, running
        return Offset(read_side_id, shard, 0, False)
    reason = row["stopped_reason"]
    return Offset(read_side_id, shard, int(row["position"]), bool(row["paused"]), reason)


def _status(read_side_id: str, row: asyncpg.Record) -> ShardStatus:
    error = row["last_error"]
    return ShardStatus(
        _offset(read_side_id, int(row["shard"]), row),
        int(row["journal_position"]),
        float(row["lag"]),
        None if error is None else LastError(error, row["last_error_at"]),
    )
