from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from cos.errors import ConflictError, JournalRejectedError
from cos.storage import EntityAppend, NewEvent
from cos.writeside import Committed
from cos.writeside._group_commit import GroupCommitWriter
from tests.support.fakes import FakeJournalStore


async def test_appends_arriving_during_a_flush_share_the_next_transaction() -> None:
    store = FakeJournalStore()
    writer = GroupCommitWriter(store, shard=0, epoch=1, max_batch=100)
    first = asyncio.create_task(writer.write(EntityAppend("e0", [])))
    await asyncio.sleep(0.002)  # the first flush is now in flight
    await asyncio.gather(first, *(writer.write(EntityAppend(f"e{i}", [])) for i in range(1, 10)))
    assert store.batches[0] == ["e0"]
    assert sorted(store.batches[1]) == [f"e{i}" for i in range(1, 10)]
    assert len(store.batches) == 2


async def test_batches_respect_the_maximum() -> None:
    store = FakeJournalStore()
    writer = GroupCommitWriter(store, shard=0, epoch=1, max_batch=3)
    await asyncio.gather(*(writer.write(EntityAppend(f"e{i}", [])) for i in range(8)))
    assert [len(b) for b in store.batches] == [3, 3, 2]


async def test_one_conflict_fails_only_its_own_append() -> None:
    store = FakeJournalStore()
    store.conflicting = {"bad"}
    writer = GroupCommitWriter(store, shard=0, epoch=1, max_batch=100)
    results = await asyncio.gather(
        *(writer.write(EntityAppend(e, [])) for e in ["a", "b", "bad", "c"]),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [Committed] * 2 + [ConflictError, Committed]
    assert sorted(e for batch in store.batches for e in batch) == ["a", "b", "c"]


async def test_writer_recovers_after_a_failed_flush() -> None:
    store = FakeJournalStore()
    store.conflicting = {"x"}
    writer = GroupCommitWriter(store, shard=0, epoch=1, max_batch=10)
    with pytest.raises(ConflictError):
        await writer.write(EntityAppend("x", []))
    await writer.write(EntityAppend("y", []))
    assert store.batches == [["y"]]


async def test_a_batch_the_database_refuses_commits_all_but_the_culprit() -> None:
    store = FakeJournalStore(delay=0)
    store.rejecting.add("bad")
    writer = GroupCommitWriter(store, shard=0, epoch=1, max_batch=100)
    names = [f"e{i}" for i in range(20)]
    names.insert(13, "bad")
    results = await asyncio.gather(
        *(writer.write(EntityAppend(n, [])) for n in names), return_exceptions=True
    )
    failed = [n for n, r in zip(names, results, strict=True) if not isinstance(r, Committed)]
    assert failed == ["bad"]
    assert isinstance(results[13], JournalRejectedError)
    committed = [n for batch in store.batches for n in batch]
    assert sorted(committed) == sorted(n for n in names if n != "bad")
    assert len(store.batches) <= 12  # halving: not one transaction per command


def new_events(count: int) -> list[NewEvent]:
    now = datetime.now(timezone.utc)
    return [NewEvent(r, "t", now, b"") for r in range(1, count + 1)]


async def test_each_write_learns_its_positions_and_the_batch_it_shared() -> None:
    store = FakeJournalStore()
    writer = GroupCommitWriter(store, shard=0, epoch=1, max_batch=100)
    first = await writer.write(EntityAppend("e0", new_events(2)))
    assert first == Committed(1, 2, 1)
    results = await asyncio.gather(
        *(writer.write(EntityAppend(f"e{i}", new_events(i))) for i in (1, 2, 3))
    )
    # One transaction after the first: 6 events at positions 3..8, in write order.
    assert results == [Committed(3, 3, 3), Committed(4, 5, 3), Committed(6, 8, 3)]
