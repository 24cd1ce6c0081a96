"""The journal in PostgreSQL: events, snapshots and recovery reads
(:class:`cos.storage.JournalStore`)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cos.errors import ConflictError, FencedError
from cos.postgres._datastore import PostgresDatastore
from cos.storage import (
    DEFAULT_JOURNAL,
    EntityAppend,
    IdempotencyRecord,
    JournalSettings,
    Recovered,
    StoredEvent,
)

# One statement, one round trip. Positions come from the lease row: the UPDATE
# both checks the epoch (fencing; a stale epoch matches no row, so nothing is
# inserted and NULL comes back) and takes the row lock, held until commit. The
# next append of the shard cannot get positions before this one is visible, so
# positions are gap-free and in commit order, which read sides rely on.
_APPEND_EVENTS = """
WITH lease AS (
    UPDATE cos_shard_leases SET last_position = last_position + $3
    WHERE shard = $1 AND epoch = $2
    RETURNING last_position
), inserted AS (
    INSERT INTO cos_journal (shard, position, entity_id, revision, event_type, created_at, payload,
                             trace_context)
    SELECT $1, lease.last_position - $3 + e.ord, e.entity_id, e.revision, e.event_type,
           e.created_at, e.payload, e.trace_context
    FROM lease, unnest($4::text[], $5::bigint[], $6::text[], $7::timestamptz[], $8::bytea[],
                       $9::text[])
        WITH ORDINALITY AS e(entity_id, revision, event_type, created_at, payload, trace_context,
                             ord)
    RETURNING 1
)
"""
_APPEND = _APPEND_EVENTS + "SELECT last_position FROM lease"
# Sent after the commits it announces, by its own statement: a NOTIFY inside the append's
# transaction takes PostgreSQL's notification lock at commit, which serialized the commits
# of all shards (measured: half the appends per second with 16 concurrent shards).
JOURNAL_CHANNEL = "cos_journal_commits"
_ANNOUNCE = """
SELECT pg_notify($1, current_schema() || ':' || shard::text) FROM unnest($2::int[]) AS shard
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
SELECT shard, position, entity_id, revision, event_type, created_at, payload, trace_context
FROM cos_journal WHERE shard = $1 AND position > $2 ORDER BY position LIMIT $3
"""
# One entity's events (its UNIQUE(entity_id, revision) index), for subscriptions.
_READ_ENTITY = """
SELECT shard, position, entity_id, revision, event_type, created_at, payload, trace_context
FROM cos_journal WHERE entity_id = $2 AND revision > $4 AND shard = $1 AND position > $3
ORDER BY revision LIMIT $5
"""

# -- idempotency keys (migration 0008) -------------------------------------------------------
# A key's row is written with its command's events. An expired row (older than the window)
# is replaced; a live one is left alone, and the count of rows written tells that one of
# the keys was already taken (a race across a hand-over).
_WRITE_KEYS = """
INSERT INTO cos_idempotency AS i (entity_id, key, command_hash, revision, created_at)
SELECT k.entity_id, k.key, k.command_hash, k.revision, now()
FROM {source} unnest(${a}::text[], ${b}::text[], ${c}::bytea[], ${d}::bigint[])
    AS k(entity_id, key, command_hash, revision)
ON CONFLICT (entity_id, key) DO UPDATE
SET command_hash = EXCLUDED.command_hash, revision = EXCLUDED.revision,
    created_at = EXCLUDED.created_at
WHERE i.created_at <= now() - make_interval(secs => ${e})
RETURNING 1
"""
# The append of keyed commands, still one statement (no transaction round trips): a key
# found taken fails the whole statement through cos_idempotency_key_taken() (a unique
# violation), so nothing of it is written.
_APPEND_KEYED = (
    _APPEND_EVENTS
    + ", keys AS ("
    + _WRITE_KEYS.format(source="lease,", a=10, b=11, c=12, d=13, e=14)
    + """)
SELECT CASE WHEN (SELECT count(*) FROM keys) = $15 THEN last_position
            ELSE cos_idempotency_key_taken() END
FROM lease"""
)
_REMEMBER = (
    "WITH written AS ("
    + _WRITE_KEYS.format(source="", a=1, b=2, c=3, d=4, e=5)
    + ") SELECT count(*) FROM written"
)
# A no-op command's key has no append to ride on: the lease row, locked in share mode
# until commit, fences it as the append's UPDATE does.
_LEASE_SHARED = "SELECT 1 FROM cos_shard_leases WHERE shard = $1 AND epoch = $2 FOR SHARE"
_FIND_KEY = """
SELECT command_hash, revision FROM cos_idempotency
WHERE entity_id = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)
"""
_EVENT_AT = "SELECT payload FROM cos_journal WHERE entity_id = $1 AND revision = $2"
# Bounded, and SKIP LOCKED so that nodes sweeping at once do not wait on each other.
_FORGET_EXPIRED = """
DELETE FROM cos_idempotency WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM cos_idempotency WHERE created_at <= now() - make_interval(secs => $1)
    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))
"""


class PostgresJournalStore:
    """:class:`cos.storage.JournalStore` on a schema migrated by alembic."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        settings: JournalSettings = DEFAULT_JOURNAL,
    ) -> None:
        self._datastore = datastore
        self._pool = datastore.pool
        self._retain = settings.num_snapshots_to_retain
        self._logical_deletion = settings.logical_deletion
        self._window = settings.idempotency_window_seconds

    async def append(self, shard: int, epoch: int, batch: Sequence[EntityAppend]) -> int:
        """Write the whole batch in one transaction, fenced by the shard's epoch; returns
        the position of its last event."""
        count = sum(len(item.events) for item in batch)
        if count == 0:
            return 0
        keyed = [(item.entity_id, item.idempotency) for item in batch if item.idempotency]
        args: tuple[object, ...]
        statement, args = _APPEND, (shard, epoch, count, *_columns(batch))
        if keyed:  # still one statement; a transaction only when a snapshot is due
            statement = _APPEND_KEYED
            args = (*args, *self._key_columns(keyed), len(keyed))
        async with self._datastore.errors(f"journal write to shard {shard}"):
            if any(item.snapshot is not None for item in batch):
                async with self._pool.acquire() as conn, conn.transaction():
                    last = await conn.fetchval(statement, *args)
                    _check_fence(last, shard, epoch)
                    await self._write_snapshots(conn, batch)
            else:
                last = await self._pool.fetchval(statement, *args)
                _check_fence(last, shard, epoch)
        return int(last)

    def _key_columns(
        self, keyed: Sequence[tuple[str, IdempotencyRecord]]
    ) -> tuple[list[str], list[str], list[bytes], list[int], float]:
        return (
            [entity_id for entity_id, _ in keyed],
            [record.key for _, record in keyed],
            [record.command_hash for _, record in keyed],
            [record.revision for _, record in keyed],
            self._window,
        )

    async def remember(
        self, shard: int, epoch: int, entity_id: str, record: IdempotencyRecord
    ) -> None:
        """Record the key of a command that wrote no event, fenced by the shard's epoch."""
        async with (
            self._datastore.errors(f"idempotency key write to shard {shard}"),
            self._pool.acquire() as conn,
            conn.transaction(),
        ):
            _check_fence(await conn.fetchval(_LEASE_SHARED, shard, epoch), shard, epoch)
            written = await conn.fetchval(_REMEMBER, *self._key_columns([(entity_id, record)]))
            if written != 1:  # raised inside the transaction: it rolls back
                raise ConflictError(
                    f"the idempotency key of entity {entity_id!r} is already recorded"
                )

    async def find_idempotency(self, entity_id: str, key: str) -> IdempotencyRecord | None:
        """The record of ``key`` for the entity, unless older than the window."""
        async with self._datastore.errors(f"cannot read the keys of entity {entity_id!r}"):
            row = await self._pool.fetchrow(_FIND_KEY, entity_id, key, self._window)
        if row is None:
            return None
        return IdempotencyRecord(key, bytes(row["command_hash"]), int(row["revision"]))

    async def event_at(self, entity_id: str, revision: int) -> bytes | None:
        """The event of the entity at ``revision``, compacted or not."""
        async with self._datastore.errors(f"cannot read entity {entity_id!r}"):
            payload = await self._pool.fetchval(_EVENT_AT, entity_id, revision)
        return None if payload is None else bytes(payload)

    async def forget_expired_keys(self, limit: int) -> int:
        """Delete at most ``limit`` expired idempotency records, oldest first."""
        async with self._datastore.errors("cannot delete expired idempotency keys"):
            done = await self._pool.execute(_FORGET_EXPIRED, self._window, limit)
        return int(done.split()[-1])

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

    async def latest(self, entity_id: str) -> Recovered | None:
        """The newest event or snapshot of the entity: one indexed row, never the history."""
        async with self._datastore.errors(f"cannot read entity {entity_id!r}"):
            row = await self._pool.fetchrow(_LATEST, entity_id)
        if row is None:
            return None
        return Recovered(int(row["revision"]), row["kind"], bytes(row["payload"]))

    async def read_shard(self, shard: int, after: int, limit: int) -> list[StoredEvent]:
        """Events of ``shard`` after position ``after``, in position order."""
        async with self._datastore.errors(f"cannot read shard {shard}"):
            rows = await self._pool.fetch(_READ_SHARD, shard, after, limit)
        return [_stored(r) for r in rows]

    async def read_entity(
        self, shard: int, entity_id: str, *, after: int, after_revision: int, limit: int
    ) -> list[StoredEvent]:
        """Events of ``entity_id`` (in ``shard``) after position ``after`` and revision
        ``after_revision``, in order."""
        async with self._datastore.errors(f"cannot read entity {entity_id!r}"):
            rows = await self._pool.fetch(
                _READ_ENTITY, shard, entity_id, after, after_revision, limit
            )
        return [_stored(r) for r in rows]

    async def announce(self, shards: Sequence[int]) -> None:
        """Tell every node's listener that ``shards`` have new committed events: one
        ``NOTIFY`` on :data:`JOURNAL_CHANNEL` per shard (payload ``<schema>:<shard>``, as
        runtimes of other schemas may share the database), in one statement."""
        async with self._datastore.errors("cannot announce journal commits"):
            await self._pool.execute(_ANNOUNCE, JOURNAL_CHANNEL, list(shards))

    async def last_positions(self, shards: Sequence[int]) -> dict[int, int]:
        """The position of the last committed event of each shard (0 for none yet)."""
        async with self._datastore.errors("cannot read the journal's positions"):
            rows = await self._pool.fetch(
                "SELECT shard, last_position FROM cos_shard_leases WHERE shard = ANY($1::int[])",
                list(shards),
            )
        found = {int(r["shard"]): int(r["last_position"]) for r in rows}
        return {shard: found.get(shard, 0) for shard in shards}


def _stored(r: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        shard=int(r["shard"]),
        position=int(r["position"]),
        entity_id=str(r["entity_id"]),
        revision=int(r["revision"]),
        event_type=str(r["event_type"]),
        created_at=r["created_at"],
        payload=bytes(r["payload"]),
        trace_context=r["trace_context"],
    )


def _check_fence(last_position: int | None, shard: int, epoch: int) -> None:
    if last_position is None:
        raise FencedError(f"shard {shard}: lease epoch {epoch} is stale; another host owns it")


def _columns(
    batch: Sequence[EntityAppend],
) -> tuple[list[str], list[int], list[str], list[object], list[bytes], list[str | None]]:
    entity_ids: list[str] = []
    revisions: list[int] = []
    types: list[str] = []
    dates: list[object] = []
    payloads: list[bytes] = []
    contexts: list[str | None] = []
    for item in batch:
        for event in item.events:
            entity_ids.append(item.entity_id)
            revisions.append(event.revision)
            types.append(event.event_type)
            dates.append(event.created_at)
            payloads.append(event.payload)
            contexts.append(item.trace_context)
    return entity_ids, revisions, types, dates, payloads, contexts
