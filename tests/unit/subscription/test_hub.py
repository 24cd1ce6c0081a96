"""SubscriptionHub over an in-memory journal: catch-up, live fan-out, overflow, resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cos.errors import InvalidRequestError, UnavailableError
from cos.storage import StoredEvent
from cos.subscription import Subscription, SubscriptionHub, check_cursor
from tests.support.fakes import FakeSubscriptionJournal


async def take(stream: AsyncIterator[StoredEvent], count: int) -> list[tuple[int, int]]:
    return [(e.shard, e.position) for e in [await anext(stream) for _ in range(count)]]


async def until_overflow(hub: SubscriptionHub, count: int) -> None:
    while hub.overflows < count:  # the feed runs as soon as this test yields
        await asyncio.sleep(0)


async def test_catch_up_then_live_in_order_per_shard() -> None:
    journal = FakeSubscriptionJournal()
    for i in range(5):
        journal.add(i % 2, f"e{i}")
    hub = SubscriptionHub(journal, buffer=100)
    stream = hub.stream(Subscription({0: 0, 1: 0}))
    assert await take(stream, 5) == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]
    journal.add(1, "e9")
    journal.add(0, "e9")
    hub.wake(None)
    assert sorted(await take(stream, 2)) == [(0, 4), (1, 3)]
    await stream.aclose()
    await hub.close()


async def test_full_queue_catches_up_from_the_journal_then_goes_live() -> None:
    journal = FakeSubscriptionJournal()
    hub = SubscriptionHub(journal, buffer=2)
    slow = hub.stream(Subscription({0: 0}))
    pending = asyncio.create_task(take(slow, 1))
    journal.add(0, "a")
    hub.wake(0)
    assert await pending == [(0, 1)]  # now it has joined the feed
    for i in range(10):
        journal.add(0, f"b{i}")
    hub.wake(0)
    await until_overflow(hub, 1)
    assert await take(slow, 10) == [(0, p) for p in range(2, 12)]
    journal.add(0, "c")
    hub.wake(0)
    assert await take(slow, 1) == [(0, 12)]
    assert hub.overflows == 1
    await slow.aclose()
    await hub.close()


async def test_resume_after_a_cursor_and_one_entity_after_a_revision() -> None:
    journal = FakeSubscriptionJournal()
    for i in range(6):
        journal.add(0, "x" if i % 2 else "y")
    hub = SubscriptionHub(journal, buffer=10)
    resumed = hub.stream(Subscription({0: 4}))
    assert await take(resumed, 2) == [(0, 5), (0, 6)]
    entity = hub.stream(Subscription({0: 0}, entity_id="x", after_revision=1))
    got = [await anext(entity) for _ in range(2)]
    assert [(e.entity_id, e.revision, e.position) for e in got] == [("x", 2, 4), ("x", 3, 6)]
    journal.add(0, "y")
    journal.add(0, "x")
    hub.wake(0)
    live = await anext(entity)
    assert (live.entity_id, live.revision, live.position) == ("x", 4, 8)
    await resumed.aclose()
    await entity.aclose()
    await hub.close()


async def test_close_ends_streams_as_unavailable() -> None:
    hub = SubscriptionHub(FakeSubscriptionJournal(), buffer=10)
    stream = hub.stream(Subscription({0: 0}))
    pending = asyncio.create_task(anext(stream))
    while not hub.streams:
        await asyncio.sleep(0)
    await hub.close()
    with pytest.raises(UnavailableError, match="resume from the last cursor"):
        await pending


def test_cursor_checks_name_the_problem() -> None:
    assert check_cursor([(1, 7), (0, 3)], 2, 2, [0, 1]) == {0: 3, 1: 7}
    with pytest.raises(InvalidRequestError, match="for 4 shards; this runtime has 2"):
        check_cursor([(0, 1)], 4, 2, [0, 1])
    with pytest.raises(InvalidRequestError, match="shard 0 appears twice"):
        check_cursor([(0, 1), (0, 2)], 2, 2, [0, 1])
    with pytest.raises(InvalidRequestError, match=r"lacks shards \[1\]"):
        check_cursor([(0, 1)], 2, 2, [0, 1])
    with pytest.raises(InvalidRequestError, match=r"shards \[1\] are not those"):
        check_cursor([(1, 1)], 2, 2, [0])
    with pytest.raises(InvalidRequestError, match="shard 5 does not exist"):
        check_cursor([(5, 1)], 2, 2, [0, 1])


async def test_notifications_of_its_schema_wake_the_feed() -> None:
    journal = FakeSubscriptionJournal()
    hub = SubscriptionHub(journal, buffer=10, schema="mine", poll_seconds=3600)
    hub.start()  # no poll within the test: only notifications wake the feed
    stream = hub.stream(Subscription({3: 0}))
    pending = asyncio.create_task(take(stream, 1))
    journal.add(3, "a")
    hub.heard("mine:3")
    assert await pending == [(3, 1)]  # live from here on: the next needs a wake-up
    journal.add(3, "b")
    hub.heard("theirs:3")  # another schema's commit
    hub.heard("mine:3")
    assert await take(stream, 1) == [(3, 2)]
    journal.add(3, "c")
    hub.heard(None)  # the LISTEN connection came back: everything may be new
    assert await take(stream, 1) == [(3, 3)]
    await stream.aclose()
    await hub.close()
