"""The status reads in PostgreSQL: a read side's lag and last failure per shard
(``PostgresOffsetStore.status``/``record_failure``) and the hosts' heartbeats
(``PostgresLeaseStore.heartbeats``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from cos import postgres
from cos.storage import EntityAppend, NewEvent, Offset, ShardStatus

Stores = tuple[postgres.PostgresOffsetStore, postgres.PostgresJournalStore]


@pytest.fixture
async def stores(datastore: postgres.PostgresDatastore) -> Stores:
    return postgres.PostgresOffsetStore(datastore), postgres.PostgresJournalStore(datastore)


async def append(
    datastore: postgres.PostgresDatastore, shard: int, ages: list[float], entity: str
) -> None:
    """Events of ``entity`` in ``shard``, created ``ages`` seconds ago (oldest first)."""
    epoch = (await postgres.PostgresLeaseStore(datastore).acquire_shards([shard], "a"))[shard]
    now = datetime.now(timezone.utc)
    events = [
        NewEvent(i + 1, "t", now - timedelta(seconds=age), b"x") for i, age in enumerate(ages)
    ]
    await postgres.PostgresJournalStore(datastore).append(
        shard, epoch, [EntityAppend(entity, events)]
    )


async def test_lag_is_the_age_of_the_oldest_undelivered_event(
    stores: Stores, datastore: postgres.PostgresDatastore
) -> None:
    offsets, _ = stores
    await append(datastore, 0, [300.0, 30.0, 3.0], "e0")  # positions 1, 2, 3
    await append(datastore, 1, [50.0], "e1")
    await offsets.prepare("rs", [0, 1, 2], start_paused=False)
    assert await offsets.advance("rs", 0, expected=0, position=1)
    await offsets.set_paused("rs", [1], True)
    first, second, empty = await offsets.status("rs", [0, 1, 2])
    # Shard 0 delivered position 1: the oldest undelivered event is position 2, 30 s old.
    assert (first.offset.position, first.journal_position) == (1, 3)
    assert 30.0 <= first.lag_seconds < 40.0
    assert (second.offset, second.journal_position) == (Offset("rs", 1, 0, True), 1)
    assert 50.0 <= second.lag_seconds < 60.0
    assert empty == ShardStatus(Offset("rs", 2, 0, False), 0, 0.0, None)  # no events at all
    # Caught up: nothing undelivered, so no lag however old the events are.
    assert await offsets.advance("rs", 0, expected=1, position=3)
    caught_up = (await offsets.status("rs", [0]))[0]
    assert (caught_up.offset.position, caught_up.journal_position, caught_up.lag_seconds) == (
        3,
        3,
        0.0,
    )


async def test_status_keeps_the_order_asked_and_shards_without_a_row(stores: Stores) -> None:
    offsets, _ = stores
    rows = await offsets.status("never-prepared", [3, 1])
    assert rows == [
        ShardStatus(Offset("never-prepared", 3, 0, False), 0, 0.0, None),
        ShardStatus(Offset("never-prepared", 1, 0, False), 0, 0.0, None),
    ]


async def test_the_last_failure_is_kept_with_its_time_until_a_later_one(
    stores: Stores, db: asyncpg.Connection
) -> None:
    offsets, _ = stores
    await offsets.prepare("rs", [0, 1], start_paused=False)
    before = await db.fetchval("SELECT now()")
    await offsets.record_failure("rs", 0, "position 1 (e rev 1): UNAVAILABLE: down")
    await offsets.set_stopped("rs", 0, "position 1 (e rev 1): UNAVAILABLE: down")
    status, untouched = await offsets.status("rs", [0, 1])
    assert status.last_error is not None and untouched.last_error is None
    assert status.last_error.text == "position 1 (e rev 1): UNAVAILABLE: down"
    assert before <= status.last_error.at <= await db.fetchval("SELECT now()")
    assert status.offset.stopped_reason == "position 1 (e rev 1): UNAVAILABLE: down"
    # An operator action clears the stop, not the last failure; a later failure replaces it.
    await offsets.skip("rs", [0])
    await offsets.set_paused("rs", [0], False)
    kept = (await offsets.status("rs", [0]))[0]
    assert kept.offset.stopped_reason is None and kept.last_error == status.last_error
    await offsets.record_failure("rs", 0, "position 2 (e rev 2): successful=false")
    later = (await offsets.status("rs", [0]))[0].last_error
    assert later is not None and later.text == "position 2 (e rev 2): successful=false"
    assert later.at >= status.last_error.at
    # A failure of a shard with no row yet makes its row (at position 0, running).
    await offsets.record_failure("rs", 5, "boom")
    (fresh,) = await offsets.status("rs", [5])
    assert fresh.offset == Offset("rs", 5, 0, False)
    assert fresh.last_error is not None and fresh.last_error.text == "boom"


async def test_heartbeats_of_one_runtime_with_their_age_by_the_database_clock(
    datastore: postgres.PostgresDatastore, db: asyncpg.Connection
) -> None:
    leases = postgres.PostgresLeaseStore(datastore)
    await leases.heartbeat("rt-host-b", "10.0.0.2:9000")
    await leases.heartbeat("rt-host-a", "10.0.0.1:9000")
    await leases.heartbeat("other-host-c", "10.0.0.3:9000")  # another runtime
    await db.execute(
        "UPDATE cos_hosts SET heartbeat_at = now() - interval '42 seconds'"
        " WHERE host_id = 'rt-host-b'"
    )
    beats = await leases.heartbeats("rt-host-")
    assert [(b.host_id, b.address) for b in beats] == [
        ("rt-host-a", "10.0.0.1:9000"),
        ("rt-host-b", "10.0.0.2:9000"),
    ]
    assert 0.0 <= beats[0].age_seconds < 5.0
    assert 42.0 <= beats[1].age_seconds < 47.0
    assert timedelta(seconds=41) < beats[0].at - beats[1].at < timedelta(seconds=43)
    await leases.forget_host("rt-host-a")
    assert [b.host_id for b in await leases.heartbeats("rt-host-")] == ["rt-host-b"]
