"""The OffsetStore contract, run against every implementation (today: PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest

from cos import postgres
from cos.postgres import DatabaseTarget
from cos.storage import EntityAppend, NewEvent, Offset, OffsetStore

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
Backend = tuple[OffsetStore, "postgres.PostgresJournalStore", "postgres.PostgresLeaseStore"]


@pytest.fixture(params=["postgres"])
async def backend(
    request: pytest.FixtureRequest, database: DatabaseTarget
) -> AsyncIterator[Backend]:
    datastore = await postgres.PostgresDatastore.open(database, postgres.PoolLimits(max_size=4))
    yield (
        postgres.PostgresOffsetStore(datastore),
        postgres.PostgresJournalStore(datastore),
        postgres.PostgresLeaseStore(datastore),
    )
    await datastore.close()


async def test_rows_start_at_zero_and_auto_start_false_pauses_them(
    backend: Backend,
) -> None:
    offsets, _, _ = backend
    assert await offsets.get("rs", 0) == Offset("rs", 0, 0, False)  # no row yet
    await offsets.prepare("rs", [0, 1], start_paused=True)
    assert await offsets.list("rs", [1, 0]) == [Offset("rs", 1, 0, True), Offset("rs", 0, 0, True)]
    await offsets.set_paused("rs", [0], False)
    await offsets.prepare("rs", [0, 1], start_paused=False)  # never undoes a stored pause
    assert [o.paused for o in await offsets.list("rs", [0, 1])] == [False, True]


async def test_advance_is_a_compare_and_set(
    backend: Backend,
) -> None:
    offsets, _, _ = backend
    await offsets.prepare("rs", [0], start_paused=False)
    assert await offsets.advance("rs", 0, expected=0, position=5)
    assert not await offsets.advance("rs", 0, expected=0, position=9)  # moved meanwhile
    assert (await offsets.get("rs", 0)).position == 5
    await offsets.restart("rs", [0])
    assert (await offsets.get("rs", 0)).position == 0


async def test_skip_moves_past_the_next_event_only_where_there_is_one(
    backend: Backend,
) -> None:
    offsets, journal, leases = backend
    epoch = (await leases.acquire_shards([0], "a"))[0]
    await journal.append(0, epoch, [EntityAppend("e", [NewEvent(1, "t", NOW, b"x")])])
    await offsets.prepare("rs", [0, 1], start_paused=False)
    await offsets.skip("rs", [0, 1])
    assert [o.position for o in await offsets.list("rs", [0, 1])] == [1, 0]
    await offsets.skip("rs", [0])  # no event after position 1
    assert (await offsets.get("rs", 0)).position == 1
