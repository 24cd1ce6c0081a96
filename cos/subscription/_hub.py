"""The subscriptions of one node: one journal reader per shard, shared by its subscribers.

    commit signal (shards served here) ──┐
    NOTIFY (other nodes' commits) ───────┼─> _ShardFeed.wake ─> read_shard ─> the queue of
    safety poll (1 s) ───────────────────┘                      each subscriber (bounded)

A subscriber's stream reads the journal itself from its cursor until it is at the head
(catch-up), then takes events from its queue. Positions are gap-free per shard, so the
stream can tell each queued event apart: at or below what it has seen, a duplicate
(dropped); beyond the next position, a gap it fills from the journal first. A feed never
waits on a subscriber: when a queue is full, the subscriber leaves the fan-out, drains its
queue, joins again and catches up from the journal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence

from cos.background import Background, read_ahead
from cos.errors import UnavailableError
from cos.storage import JournalReader, StoredEvent
from cos.subscription._start import Subscription

log = logging.getLogger(__name__)

READ_BATCH = 500  # events per journal read
POLL_SECONDS = 1.0  # the safety poll, should a notification be lost
_RETRY_PAUSE = 0.5  # after a failed read of a feed


class _Subscriber:
    """A stream's bounded queue, and whether a feed dropped it for being full."""

    def __init__(self, buffer: int) -> None:
        # None: the hub is closing (it wakes a stream waiting on an empty queue).
        self.queue: asyncio.Queue[StoredEvent | None] = asyncio.Queue(buffer)
        self.dropped = False
        self.closed = False

    def close(self) -> None:
        """End the stream once it has taken what its queue holds."""
        self.closed = self.dropped = True
        if not self.queue.full():
            self.queue.put_nowait(None)

    def offer(self, event: StoredEvent) -> bool:
        """Queue ``event``; False (and dropped) when the queue is full."""
        if self.closed:
            return False
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            return False
        return True


class _ShardFeed:
    """Reads the new events of one shard when woken and hands them to its subscribers."""

    def __init__(
        self, shard: int, journal: JournalReader, on_overflow: Callable[[int], None]
    ) -> None:
        self.shard = shard
        self._on_overflow = on_overflow
        self.subscribers: set[_Subscriber] = set()
        self._journal = journal
        self._wake = asyncio.Event()
        self._position = 0
        self._background = Background()
        self.ready = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        self._background.start(self._run())

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        # The feed starts at the head: what came before is the subscribers' catch-up.
        while not self.ready.done():
            try:
                self._position = (await self._journal.last_positions([self.shard]))[self.shard]
                self.ready.set_result(None)
            except Exception as exc:  # the database is away: try again
                log.warning("subscriptions: shard %s head not read: %r", self.shard, exc)
                await asyncio.sleep(_RETRY_PAUSE)
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except Exception as exc:  # the next wake-up (or poll) tries again
                log.warning("subscriptions: shard %s not read: %r", self.shard, exc)
                await asyncio.sleep(_RETRY_PAUSE)
                self._wake.set()

    async def _drain(self) -> None:
        while True:
            events = await self._journal.read_shard(self.shard, self._position, READ_BATCH)
            for event in events:
                full = [s for s in self.subscribers if not s.offer(event)]
                if full:
                    self.subscribers.difference_update(full)
                    self._on_overflow(len(full))
            if events:
                self._position = events[-1].position
            if len(events) < READ_BATCH:
                return

    def stop(self) -> None:
        self._background.cancel()

    async def stopped(self) -> None:
        await self._background.stop()


class SubscriptionHub:
    """Every subscription of this node; ``stream`` is one subscriber's events."""

    def __init__(
        self,
        journal: JournalReader,
        *,
        buffer: int,
        schema: str = "",
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._journal = journal
        self._schema = schema  # whose journal notifications are ours
        self._buffer = buffer
        self._poll_seconds = poll_seconds
        self._feeds: dict[int, _ShardFeed] = {}
        self._subscribers: set[_Subscriber] = set()
        self.overflows = 0  # how many times a full queue sent a stream back to the journal
        self._background = Background()

    def start(self) -> None:
        """Start the safety poll."""
        self._background.start(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            self.wake(None)

    def wake(self, shard: int | None) -> None:
        """New events may be in ``shard`` (in any shard for None)."""
        if shard is None:
            for feed in self._feeds.values():
                feed.wake()
        elif shard in self._feeds:
            self._feeds[shard].wake()

    def heard(self, payload: str | None) -> None:
        """A journal notification (payload: ``<schema>:<shard>``; another schema's are
        ignored), or None after a lost connection (every feed wakes)."""
        if payload is None:
            self.wake(None)
            return
        schema, _, shard = payload.rpartition(":")
        if schema.lower() == self._schema.lower() and shard.isdigit():
            self.wake(int(shard))

    async def stream(self, subscription: Subscription) -> AsyncIterator[StoredEvent]:
        """The events ``subscription`` asks for, per shard in journal order, without end."""
        subscriber = _Subscriber(self._buffer)
        self._subscribers.add(subscriber)
        seen = dict(subscription.positions)  # per shard: the last position accounted for
        try:
            while not subscriber.closed:
                await self._join(subscriber, subscription.shards)
                for shard in subscription.shards:
                    async for event in self._catch_up(subscription, shard, seen, None):
                        yield event
                async for event in self._live(subscriber, subscription, seen):
                    yield event
                subscriber.dropped = False  # it was too slow: catch up and join again
            raise UnavailableError("the node is shutting down; resume from the last cursor")
        finally:
            self._subscribers.discard(subscriber)
            self._leave(subscriber, subscription.shards)

    async def _live(
        self, subscriber: _Subscriber, subscription: Subscription, seen: dict[int, int]
    ) -> AsyncIterator[StoredEvent]:
        """Queued events, gaps filled from the journal, until the queue overflowed and
        is drained."""
        while not (subscriber.dropped and subscriber.queue.empty()):
            event = await subscriber.queue.get()
            if event is None:
                continue
            shard = event.shard
            if event.position <= seen[shard]:
                continue  # already delivered by a catch-up
            if event.position > seen[shard] + 1:
                async for missed in self._catch_up(subscription, shard, seen, event.position - 1):
                    yield missed
            seen[shard] = event.position
            if subscription.matches(event):
                yield event

    async def _catch_up(
        self,
        subscription: Subscription,
        shard: int,
        seen: MutableMapping[int, int],
        upto: int | None,
    ) -> AsyncIterator[StoredEvent]:
        """From the journal: the events after ``seen[shard]`` up to position ``upto``
        (to the head for None), each next batch read while the one before is yielded."""
        ahead: asyncio.Future[list[StoredEvent]] | None = None
        try:
            events = await self._read(subscription, shard, seen[shard])
            while True:
                if len(events) == READ_BATCH and (upto is None or events[-1].position < upto):
                    ahead = read_ahead(self._read(subscription, shard, events[-1].position))
                for event in events:
                    if upto is not None and event.position > upto:
                        seen[shard] = upto
                        return
                    seen[shard] = event.position
                    yield event
                if ahead is None:
                    if upto is not None:
                        seen[shard] = max(seen[shard], upto)
                    return
                events, ahead = await ahead, None
        finally:
            if ahead is not None:
                ahead.cancel()

    async def _read(self, subscription: Subscription, shard: int, after: int) -> list[StoredEvent]:
        if subscription.entity_id is None:
            return await self._journal.read_shard(shard, after, READ_BATCH)
        return await self._journal.read_entity(
            shard,
            subscription.entity_id,
            after=after,
            after_revision=subscription.after_revision,
            limit=READ_BATCH,
        )

    async def _join(self, subscriber: _Subscriber, shards: Sequence[int]) -> None:
        """Add ``subscriber`` to the feeds of ``shards`` once they know their head, so
        every event after its catch-up reaches its queue."""
        for shard in shards:
            feed = self._feeds.get(shard)
            if feed is None:
                feed = self._feeds[shard] = _ShardFeed(shard, self._journal, self._overflowed)
                feed.start()
            feed.subscribers.add(subscriber)
        await asyncio.gather(*(asyncio.shield(self._feeds[s].ready) for s in shards))

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return len(self._subscribers)

    def _overflowed(self, count: int) -> None:
        self.overflows += count
        log.debug("subscriptions: %s stream(s) fell behind; they catch up from the journal", count)

    def _leave(self, subscriber: _Subscriber, shards: Sequence[int]) -> None:
        for shard in shards:
            feed = self._feeds.get(shard)
            if feed is None:
                continue
            feed.subscribers.discard(subscriber)
            if not feed.subscribers:
                del self._feeds[shard]
                feed.stop()

    async def last_positions(self, shards: Sequence[int]) -> dict[int, int]:
        """The journal's head in each of ``shards`` (where "from now" starts)."""
        return await self._journal.last_positions(shards)

    async def close(self) -> None:
        """End every stream (UNAVAILABLE: its client resumes elsewhere from its cursor),
        stop the poll and every feed."""
        for subscriber in self._subscribers:
            subscriber.close()
        await self._background.stop()
        feeds, self._feeds = list(self._feeds.values()), {}
        await asyncio.gather(*(feed.stopped() for feed in feeds))
