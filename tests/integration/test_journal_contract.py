"""The JournalStore and LeaseStore contract, run against every implementation (today:
PostgreSQL). Fencing is a property of the pair: a journal write checks the lease epoch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cos.errors import ConflictError, FencedError
from cos.postgres import (
    DatabaseTarget,
    PoolLimits,
    PostgresDatastore,
    PostgresJournalStore,
    PostgresLeaseStore,
)
from cos.storage import (
    EntityAppend,
    IdempotencyRecord,
    JournalSettings,
    JournalStore,
    LeaseStore,
    NewSnapshot,
)
from tests.support.journal_rows import events


async def open_postgres(
    database: DatabaseTarget, retain: int = 2, logical_deletion: bool = False
) -> tuple[PostgresDatastore, PostgresJournalStore, PostgresLeaseStore]:
    datastore = await PostgresDatastore.open(database, PoolLimits(max_size=8))
    journal = PostgresJournalStore(
        datastore,
        JournalSettings(num_snapshots_to_retain=retain, logical_deletion=logical_deletion),
    )
    return datastore, journal, PostgresLeaseStore(datastore)


@pytest.fixture(params=["postgres"])
async def stores(
    request: pytest.FixtureRequest, database: DatabaseTarget
) -> AsyncIterator[tuple[JournalStore, LeaseStore]]:
    datastore, journal, leases = await open_postgres(database, retain=2)
    yield journal, leases
    await datastore.close()


@pytest.fixture
def store(stores: tuple[JournalStore, LeaseStore]) -> JournalStore:
    return stores[0]


@pytest.fixture
def leases(stores: tuple[JournalStore, LeaseStore]) -> LeaseStore:
    return stores[1]


async def test_acquire_bumps_the_epoch_each_time(store: JournalStore, leases: LeaseStore) -> None:
    assert await leases.acquire_shards([0, 1], "a") == {0: 1, 1: 1}
    assert await leases.acquire_shards([1], "b") == {1: 2}


async def test_append_assigns_gap_free_positions_per_shard(
    store: JournalStore, leases: LeaseStore
) -> None:
    epochs = await leases.acquire_shards([3, 4], "a")
    last = await store.append(
        3, epochs[3], [EntityAppend("a", events(1, 2)), EntityAppend("b", events(1))]
    )
    assert last == 3  # the batch's last position
    assert await store.append(4, epochs[4], [EntityAppend("c", events(1))]) == 1
    assert await store.append(3, epochs[3], [EntityAppend("a", events(3))]) == 4
    stored = await store.read_shard(3, 0, 100)
    assert [(e.position, e.entity_id, e.revision) for e in stored] == [
        (1, "a", 1),
        (2, "a", 2),
        (3, "b", 1),
        (4, "a", 3),
    ]
    assert [e.position for e in await store.read_shard(4, 0, 100)] == [1]
    assert [e.position for e in await store.read_shard(3, 2, 1)] == [3]


async def test_each_event_keeps_the_trace_context_of_its_command(
    store: JournalStore, leases: LeaseStore
) -> None:
    epoch = (await leases.acquire_shards([7], "a"))[7]
    traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await store.append(
        7,
        epoch,
        [EntityAppend("t", events(1, 2), trace_context=traced), EntityAppend("u", events(1))],
    )
    stored = await store.read_shard(7, 0, 10)
    assert [(e.entity_id, e.trace_context) for e in stored] == [
        ("t", traced),
        ("t", traced),
        ("u", None),
    ]


async def test_stale_epoch_cannot_write(store: JournalStore, leases: LeaseStore) -> None:
    old = (await leases.acquire_shards([5], "zombie"))[5]
    new = (await leases.acquire_shards([5], "new-owner"))[5]
    assert new == old + 1
    with pytest.raises(FencedError):
        await store.append(5, old, [EntityAppend("z", events(1))])
    assert await store.read_shard(5, 0, 10) == []
    await store.append(5, new, [EntityAppend("z", events(1))])
    assert [e.position for e in await store.read_shard(5, 0, 10)] == [1]


async def test_duplicate_revision_is_a_conflict_and_writes_nothing(
    store: JournalStore, leases: LeaseStore
) -> None:
    epoch = (await leases.acquire_shards([6], "a"))[6]
    await store.append(6, epoch, [EntityAppend("d", events(1))])
    with pytest.raises(ConflictError):
        await store.append(6, epoch, [EntityAppend("e", events(1)), EntityAppend("d", events(1))])
    assert [(e.entity_id, e.position) for e in await store.read_shard(6, 0, 10)] == [("d", 1)]
    await store.append(6, epoch, [EntityAppend("e", events(1))])
    assert [e.position for e in await store.read_shard(6, 0, 10)] == [1, 2]


async def test_latest_is_the_newest_event_or_snapshot(
    store: JournalStore, leases: LeaseStore
) -> None:
    epoch = (await leases.acquire_shards([7], "a"))[7]
    assert await store.latest("l") is None
    await store.append(7, epoch, [EntityAppend("l", events(1, 2))])
    newest = await store.latest("l")
    assert newest is not None and (newest.revision, newest.kind, newest.payload) == (
        2,
        "event",
        b"event-2",
    )
    await store.append(7, epoch, [EntityAppend("l", events(3), NewSnapshot(3, b"snap-3"))])
    newest = await store.latest("l")
    assert newest is not None and (newest.revision, newest.kind) == (3, "snapshot")


async def test_snapshots_keep_only_the_newest(
    store: JournalStore, leases: LeaseStore, database: DatabaseTarget
) -> None:
    epoch = (await leases.acquire_shards([8], "a"))[8]
    for revision in range(1, 5):
        await store.append(
            8, epoch, [EntityAppend("s", events(revision), NewSnapshot(revision, b"s"))]
        )
    conn = await asyncpg.connect(**database.connect_kwargs())
    try:
        kept = await conn.fetch(
            "SELECT revision FROM cos_snapshots WHERE entity_id = 's' ORDER BY 1"
        )
    finally:
        await conn.close()
    assert [row["revision"] for row in kept] == [3, 4]


async def test_logical_deletion_marks_events_before_the_oldest_snapshot(
    database: DatabaseTarget,
) -> None:
    datastore, store, leases = await open_postgres(database, retain=1, logical_deletion=True)
    try:
        epoch = (await leases.acquire_shards([9], "a"))[9]
        await store.append(9, epoch, [EntityAppend("ld", events(1, 2))])
        await store.append(9, epoch, [EntityAppend("ld", events(3), NewSnapshot(3, b"s3"))])
        await store.append(9, epoch, [EntityAppend("ld", events(4))])
        conn = await asyncpg.connect(**database.connect_kwargs())
        try:
            rows = await conn.fetch("SELECT revision, deleted FROM cos_journal ORDER BY revision")
        finally:
            await conn.close()
        assert [(r["revision"], r["deleted"]) for r in rows] == [
            (1, True),
            (2, True),
            (3, False),
            (4, False),
        ]
        assert len(await store.read_shard(9, 0, 10)) == 4, "read sides still see every event"
    finally:
        await datastore.close()


async def test_concurrent_appends_to_one_shard_commit_in_position_order(
    store: JournalStore, leases: LeaseStore, database: DatabaseTarget
) -> None:
    # Positions must be visible in order: a reader that saw position p must
    # already be able to see every position below p (read sides rely on it).
    epoch = (await leases.acquire_shards([10], "a"))[10]
    appends = [store.append(10, epoch, [EntityAppend(f"x{i}", events(1))]) for i in range(40)]
    conn = await asyncpg.connect(**database.connect_kwargs())
    observed_gaps = []

    async def watch() -> None:
        for _ in range(200):
            rows = await conn.fetch("SELECT position FROM cos_journal WHERE shard = 10")
            seen = sorted(row["position"] for row in rows)
            if seen != list(range(1, len(seen) + 1)):
                observed_gaps.append(seen)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(watch(), *appends)
    finally:
        await conn.close()
    assert observed_gaps == []
    assert [e.position for e in await store.read_shard(10, 0, 100)] == list(range(1, 41))


# -- idempotency keys --------------------------------------------------------------------


async def age_keys(database: DatabaseTarget, seconds: int) -> None:
    """Make every idempotency record ``seconds`` older (instead of waiting that long)."""
    conn = await asyncpg.connect(**database.connect_kwargs())
    try:
        await conn.execute(
            "UPDATE cos_idempotency SET created_at = created_at - make_interval(secs => $1)",
            seconds,
        )
    finally:
        await conn.close()


async def test_a_key_is_written_with_its_events_or_not_at_all(
    store: JournalStore, leases: LeaseStore
) -> None:
    epoch = (await leases.acquire_shards([11], "a"))[11]
    first = IdempotencyRecord("k-1", b"hash-1", 2)
    assert await store.find_idempotency("i", "k-1") is None
    await store.append(11, epoch, [EntityAppend("i", events(1, 2), idempotency=first)])
    assert await store.find_idempotency("i", "k-1") == first
    assert await store.event_at("i", 2) == b"event-2"
    assert await store.event_at("i", 3) is None
    # The key taken: the whole transaction fails, the other entity's events too.
    again = IdempotencyRecord("k-1", b"hash-2", 3)
    with pytest.raises(ConflictError, match="idempotency key"):
        await store.append(
            11,
            epoch,
            [EntityAppend("j", events(1)), EntityAppend("i", events(3), idempotency=again)],
        )
    assert [(e.entity_id, e.revision) for e in await store.read_shard(11, 0, 10)] == [
        ("i", 1),
        ("i", 2),
    ]
    assert await store.find_idempotency("i", "k-1") == first
    # Keys are per entity: another entity may use the same one (here with a snapshot).
    other = IdempotencyRecord("k-1", b"hash-3", 1)
    await store.append(
        11, epoch, [EntityAppend("j", events(1), NewSnapshot(1, b"s"), idempotency=other)]
    )
    assert await store.find_idempotency("j", "k-1") == other
    newest = await store.latest("j")
    assert newest is not None and newest.kind == "snapshot"


async def test_a_no_op_commands_key_is_fenced_and_kept_once(
    store: JournalStore, leases: LeaseStore
) -> None:
    old = (await leases.acquire_shards([12], "zombie"))[12]
    new = (await leases.acquire_shards([12], "new-owner"))[12]
    record = IdempotencyRecord("noop", b"hash", 0)
    with pytest.raises(FencedError):
        await store.remember(12, old, "n", record)
    assert await store.find_idempotency("n", "noop") is None
    await store.remember(12, new, "n", record)
    assert await store.find_idempotency("n", "noop") == record
    with pytest.raises(ConflictError):
        await store.remember(12, new, "n", IdempotencyRecord("noop", b"other", 0))
    assert await store.find_idempotency("n", "noop") == record


async def test_an_expired_key_is_absent_replaced_and_swept(
    store: JournalStore, leases: LeaseStore, database: DatabaseTarget
) -> None:
    epoch = (await leases.acquire_shards([13], "a"))[13]
    for entity_id in ("x", "y", "z"):
        record = IdempotencyRecord("k", b"old", 1)
        await store.append(13, epoch, [EntityAppend(entity_id, events(1), idempotency=record)])
    assert await store.forget_expired_keys(10) == 0
    await age_keys(database, 2 * 86400)  # twice the store's window
    assert await store.find_idempotency("x", "k") is None
    renewed = IdempotencyRecord("k", b"new", 2)
    await store.append(13, epoch, [EntityAppend("x", events(2), idempotency=renewed)])
    assert await store.find_idempotency("x", "k") == renewed
    assert await store.forget_expired_keys(1) == 1
    assert await store.forget_expired_keys(10) == 1
    assert await store.forget_expired_keys(10) == 0
    assert await store.find_idempotency("x", "k") == renewed


async def test_a_lease_is_taken_over_only_from_the_epoch_read(leases: LeaseStore) -> None:
    first = await leases.acquire_shards([0, 1], "rt-host-a")
    # Another host took shard 1 since its epoch was read: only shard 0 is taken over.
    await leases.acquire_shards([1], "rt-host-c")
    taken = await leases.take_over({0: first[0], 1: first[1]}, "rt-host-b")
    assert taken == {0: first[0] + 1}
    owners = {lease.shard: (lease.owner, lease.epoch) for lease in await leases.leases()}
    assert owners == {0: ("rt-host-b", first[0] + 1), 1: ("rt-host-c", first[1] + 1)}


async def test_standing_is_the_live_hosts_of_a_runtime_and_every_lease(
    leases: LeaseStore, db: asyncpg.Connection
) -> None:
    await leases.acquire_shards([0], "rt-host-a")
    await leases.acquire_shards([1], "rt-host-b")
    for host in ("rt-host-a", "rt-host-b", "other-host-c"):
        await leases.heartbeat(host, f"{host}:9000")
    await db.execute(
        "UPDATE cos_hosts SET heartbeat_at = now() - interval '30 seconds'"
        " WHERE host_id = 'rt-host-b'"
    )
    standing = await leases.standing("rt-host-", timeout=10.0)
    assert dict(standing.live) == {"rt-host-a": "rt-host-a:9000"}
    assert sorted((lease.shard, lease.owner) for lease in standing.leases) == [
        (0, "rt-host-a"),
        (1, "rt-host-b"),
    ]
