"""What subscriptions need of the PostgreSQL journal: announcements of commits heard by
every listener (and none from the append itself), and reads of one entity's events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cos.postgres import (
    JOURNAL_CHANNEL,
    ControlListener,
    DatabaseTarget,
    PoolLimits,
    PostgresDatastore,
    PostgresJournalStore,
    PostgresLeaseStore,
)
from cos.storage import EntityAppend
from tests.support.journal_rows import events


@pytest.fixture
async def datastore(database: DatabaseTarget) -> AsyncIterator[PostgresDatastore]:
    datastore = await PostgresDatastore.open(database, PoolLimits(max_size=4))
    yield datastore
    await datastore.close()


async def test_announce_notifies_every_listener_and_an_append_alone_does_not(
    database: DatabaseTarget, datastore: PostgresDatastore
) -> None:
    heard: asyncio.Queue[str | None] = asyncio.Queue()
    listener = ControlListener(database, heard.put_nowait, channel=JOURNAL_CHANNEL)
    await listener.start()
    try:
        epochs = await PostgresLeaseStore(datastore).acquire_shards([2], "me")
        journal = PostgresJournalStore(datastore)
        await journal.append(2, epochs[2], [EntityAppend("a", events(1))])
        await journal.announce([2, 0])
        assert await heard.get() == f"{database.schema}:2"  # not the append's: it sends none
        assert await heard.get() == f"{database.schema}:0"
        await journal.announce([1])
        assert await heard.get() == f"{database.schema}:1"
        assert heard.empty()
    finally:
        await listener.close()


async def test_read_entity_after_a_position_and_a_revision(
    datastore: PostgresDatastore,
) -> None:
    epochs = await PostgresLeaseStore(datastore).acquire_shards([0], "me")
    journal = PostgresJournalStore(datastore)
    for revision in range(1, 4):
        await journal.append(
            0,
            epochs[0],
            [EntityAppend("x", events(revision)), EntityAppend(f"y{revision}", events(1))],
        )
    everything = await journal.read_entity(0, "x", after=0, after_revision=0, limit=10)
    assert [(e.revision, e.position) for e in everything] == [(1, 1), (2, 3), (3, 5)]
    after = await journal.read_entity(0, "x", after=3, after_revision=0, limit=10)
    assert [e.revision for e in after] == [3]
    later = await journal.read_entity(0, "x", after=0, after_revision=1, limit=1)
    assert [e.revision for e in later] == [2]
    assert await journal.read_entity(1, "x", after=0, after_revision=0, limit=10) == []
