"""The journal in PostgreSQL, through asyncpg. The only journal module that imports asyncpg."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cos.errors import ConflictError, FencedError, JournalUnavailableError
from cos.journal.database import DatabaseTarget
from cos.journal.store import EntityAppend, Recovered, StoredEvent

# One statement, one round trip. Positions come from the lease row: the UPDATE
# both checks the epoch (fencing; a stale epoch matches no row, so nothing is
# inserted and NULL comes back) and takes the row lock, held until commit. The
# next append of the shard cannot get positions before this one is visible, so
# positions are gap-free and in commit order, which read sides rely on.
_APPEND = """
WITH lease AS (
    UPDATE cos_shard_leases SET last_position = last_position + $3
    WHERE shard = $1 AND epoch = $2
    RETURNING last_position
), inserted AS (
    INSERT INTO cos_journal (shard, position, entity_id, revision, event_type, created_at, payload)
    SELECT $1, lease.last_position - $3 + e.ord, e.entity_id, e.revision, e.event_type,
           e.created_at, e.payload
    FROM lease, unnest($4::text[], $5::bigint[], $6::text[], $7::timestamptz[], $8::bytea[])
        WITH ORDINALITY AS e(entity_id, revision, event_type, created_at, payload, ord)
    RETURNING 1
)
SELECT last_position FROM lease
"""
_INSERT_SNAPSHOT = """
INSERT INTO cos_snapshots (entity_id, revision, created_at, payload)
VALUES ($1, $2, now(), $3)
ON CONFLICT (entity_id, revision) DO UPDATE SET payload = EXCLUDED.payload
"""
_TRIM_SNAPSHOTS = """
DELETE FROM cos_snapshots WHERE entity_id = $1 AND revision <= (
    SELECT revision FROM cos_snapshots WHERE entity_id = $1
    ORDER BY revision DESC OFFSET $2 LIMIT 1)
"""
_MARK_DELETED = """
UPDATE cos_journal SET deleted = true
WHERE entity_id = $1 AND NOT deleted AND revision < (
    SELECT min(revision) FROM cos_snapshots WHERE entity_id = $1)
"""
_ACQUIRE = """
INSERT INTO cos_shard_leases (shard, owner, epoch)
SELECT shard, $2, 1 FROM unnest($1::int[]) AS shard
ON CONFLICT (shard) DO UPDATE
SET owner = EXCLUDED.owner, epoch = cos_shard_leases.epoch + 1, acquired_at = now()
RETURNING shard, epoch
"""
# On a tie the snapshot wins: it holds the same state and, once events are
# compacted, it is the record that stays.
_LATEST = """
(SELECT revision, 'event' AS kind, payload FROM cos_journal
 WHERE entity_id = $1 AND NOT deleted ORDER BY revision DESC LIMIT 1)
UNION ALL
(SELECT revision, 'snapshot' AS kind, payload FROM cos_snapshots
 WHERE entity_id = $1 ORDER BY revision DESC LIMIT 1)
ORDER BY revision DESC, kind DESC LIMIT 1
"""
_READ_SHARD = """
SELECT shard, position, entity_id, revision, event_type, created_at, payload
FROM cos_journal WHERE shard = $1 AND position > $2 ORDER BY position LIMIT $3
"""

_TRANSIENT = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


class PostgresJournalStore:
    """:class:`cos.journal.store.JournalStore` on a PostgreSQL schema migrated by alembic."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        snapshots_to_retain: int = 2,
        logical_deletion: bool = False,
    ) -> None:
        self._pool = pool
        self._retain = snapshots_to_retain
        self._logical_deletion = logical_deletion

    @classmethod
    async def connect(
        cls,
        target: DatabaseTarget,
        max_size: int = 20,
        snapshots_to_retain: int = 2,
        logical_deletion: bool = False,
    ) -> PostgresJournalStore:
        """Open a connection pool to ``target``."""
        try:
            pool = await asyncpg.create_pool(
                **target.connect_kwargs(), min_size=1, max_size=max_size, reset=_keep_session
            )
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot reach the journal database: {exc}") from exc
        return cls(pool, snapshots_to_retain, logical_deletion)

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, shared with the read-side offset store."""
        return self._pool

    async def acquire_shards(self, shards: Sequence[int], owner: str) -> dict[int, int]:
        """Take each shard's lease for ``owner`` with a higher epoch than any before."""
        try:
            rows = await self._pool.fetch(_ACQUIRE, list(shards), owner)
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot take shard leases: {exc}") from exc
        return {int(row["shard"]): int(row["epoch"]) for row in rows}

    async def append(self, shard: int, epoch: int, batch: Sequence[EntityAppend]) -> None:
        """Write the whole batch in one transaction, fenced by the shard's epoch."""
        count = sum(len(item.events) for item in batch)
        if count == 0:
            return
        args = (shard, epoch, count, *_columns(batch))
        try:
            if any(item.snapshot is not None for item in batch):
                async with self._pool.acquire() as conn, conn.transaction():
                    last = await conn.fetchval(_APPEND, *args)
                    _check_fence(last, shard, epoch)
                    await self._write_snapshots(conn, batch)
            else:
                _check_fence(await self._pool.fetchval(_APPEND, *args), shard, epoch)
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"shard {shard}: a revision already exists: {exc}") from exc
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"journal write failed: {exc}") from exc

    async def _write_snapshots(
        self, conn: asyncpg.Connection, batch: Sequence[EntityAppend]
    ) -> None:
        for item in batch:
            if item.snapshot is None:
                continue
            snap = item.snapshot
            await conn.execute(_INSERT_SNAPSHOT, item.entity_id, snap.revision, snap.payload)
            await conn.execute(_TRIM_SNAPSHOTS, item.entity_id, self._retain)
            if self._logical_deletion:
                await conn.execute(_MARK_DELETED, item.entity_id)

    async def leases(self) -> list[tuple[int, str, int]]:
        """Every shard lease as (shard, owner, epoch)."""
        try:
            rows = await self._pool.fetch("SELECT shard, owner, epoch FROM cos_shard_leases")
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot read shard leases: {exc}") from exc
        return [(int(r["shard"]), str(r["owner"]), int(r["epoch"])) for r in rows]

    async def latest(self, entity_id: str) -> Recovered | None:
        """The newest event or snapshot of the entity: one indexed row, never the history."""
        try:
            row = await self._pool.fetchrow(_LATEST, entity_id)
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot read entity {entity_id!r}: {exc}") from exc
        if row is None:
            return None
        return Recovered(int(row["revision"]), row["kind"], bytes(row["payload"]))

    async def read_shard(self, shard: int, after: int, limit: int) -> list[StoredEvent]:
        """Events of ``shard`` after position ``after``, in position order."""
        try:
            rows = await self._pool.fetch(_READ_SHARD, shard, after, limit)
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot read shard {shard}: {exc}") from exc
        return [
            StoredEvent(
                shard=int(row["shard"]),
                position=int(row["position"]),
                entity_id=row["entity_id"],
                revision=int(row["revision"]),
                event_type=row["event_type"],
                created_at=row["created_at"],
                payload=bytes(row["payload"]),
            )
            for row in rows
        ]

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()


def _check_fence(last_position: int | None, shard: int, epoch: int) -> None:
    if last_position is None:
        raise FencedError(f"shard {shard}: lease epoch {epoch} is stale; another host owns it")


async def _keep_session(conn: asyncpg.Connection) -> None:
    # The store sets no session state (no LISTEN, advisory lock, cursor or SET),
    # so asyncpg's reset query on every release would be a wasted round trip
    # per command. Only a transaction left open by a cancelled call is undone.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _columns(
    batch: Sequence[EntityAppend],
) -> tuple[list[str], list[int], list[str], list[object], list[bytes]]:
    entity_ids: list[str] = []
    revisions: list[int] = []
    types: list[str] = []
    dates: list[object] = []
    payloads: list[bytes] = []
    for item in batch:
        for event in item.events:
            entity_ids.append(item.entity_id)
            revisions.append(event.revision)
            types.append(event.event_type)
            dates.append(event.created_at)
            payloads.append(event.payload)
    return entity_ids, revisions, types, dates, payloads
