"""Test doubles for pure unit tests (integration tests use the real parts)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone

from chief_of_state.v1 import writeside_pb2
from cos.errors import ConflictError, JournalRejectedError, JournalUnavailableError
from cos.sharding import ShardInfo
from cos.storage import EntityAppend, IdempotencyRecord, Recovered, StoredEvent
from cos.writeside import HandlerCall


class FakeJournalStore:
    """Records append batches; can be told to refuse an entity as a conflict, or the
    way PostgreSQL refuses data it cannot store (``rejecting``)."""

    def __init__(self, delay: float = 0.01, *, remember: bool = False) -> None:
        self.batches: list[list[str]] = []
        # Every committed event as (entity id, revision), in journal order; with
        # ``remember``, ``latest`` answers from them as the journal would.
        self.events: list[tuple[str, int]] = []
        self._remember = remember
        self._newest: dict[str, Recovered] = {}
        # One batch holding an event of one of these (entity id, revision) fails as a
        # lost database would, once each.
        self.unavailable_at: set[tuple[str, int]] = set()
        self.conflicting: set[str] = set()
        self.rejecting: set[str] = set()
        self._delay = delay
        self.position = 0
        # Idempotency records by (entity id, key); ``recorded_by_another`` ones appear in
        # ``keys`` when an append of their entity is tried, which then fails as a conflict
        # (another writer of the entity got there first).
        self.keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self.recorded_by_another: dict[tuple[str, str], IdempotencyRecord] = {}
        self.expired: list[int | Exception] = []
        self.sweeps: list[int] = []
        self.swept = asyncio.Event()

    async def acquire_shards(self, shards: Sequence[int], owner: str) -> dict[int, int]:
        return {shard: 1 for shard in shards}

    async def append(self, shard: int, epoch: int, batch: Sequence[EntityAppend]) -> int:
        await asyncio.sleep(self._delay)
        ids = [item.entity_id for item in batch]
        for item in batch:
            if item.idempotency is not None:
                taken = (item.entity_id, item.idempotency.key)
                if taken in self.recorded_by_another:
                    self.keys[taken] = self.recorded_by_another.pop(taken)
                    raise ConflictError(f"key {taken} already recorded")
        if self.conflicting & set(ids):
            raise ConflictError(f"conflict in {ids}")
        if self.rejecting & set(ids):
            raise JournalRejectedError(f"the database refused {ids}")
        written = [(item.entity_id, e.revision) for item in batch for e in item.events]
        if lost := self.unavailable_at & set(written):
            self.unavailable_at -= lost
            raise JournalUnavailableError(f"the database went away writing {sorted(lost)}")
        self.batches.append(ids)
        self.events.extend(written)
        for item in batch:
            if item.idempotency is not None:
                self.keys[(item.entity_id, item.idempotency.key)] = item.idempotency
            if item.events:
                last = item.events[-1]
                self._newest[item.entity_id] = Recovered(last.revision, "event", last.payload)
        self.position += sum(len(item.events) for item in batch)
        return self.position

    async def latest(self, entity_id: str) -> Recovered | None:
        return self._newest.get(entity_id) if self._remember else None

    async def remember(
        self, shard: int, epoch: int, entity_id: str, record: IdempotencyRecord
    ) -> None:
        self.keys[(entity_id, record.key)] = record

    async def find_idempotency(self, entity_id: str, key: str) -> IdempotencyRecord | None:
        return self.keys.get((entity_id, key))

    async def event_at(self, entity_id: str, revision: int) -> bytes | None:
        return None

    async def forget_expired_keys(self, limit: int) -> int:
        """Answers from ``expired`` (a count, or an exception to raise) in turn, records
        each ``limit`` in ``sweeps`` and sets ``swept`` once ``expired`` is used up."""
        self.sweeps.append(limit)
        answer = self.expired.pop(0) if self.expired else 0
        if not self.expired:
            self.swept.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def read_shard(self, shard: int, after: int, limit: int) -> list[StoredEvent]:
        return []

    async def close(self) -> None:
        return None


class FakeWriteHandler:
    """Answers every command with one event; ``gate`` can hold commands in flight."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.commands = 0

    async def handle_command(
        self, request: writeside_pb2.HandleCommandRequest, call: HandlerCall
    ) -> writeside_pb2.HandleCommandResponse:
        self.commands += 1
        if self.gate is not None:
            await self.gate.wait()
        return writeside_pb2.HandleCommandResponse(events=[request.command])

    async def handle_event(
        self, request: writeside_pb2.HandleEventRequest, call: HandlerCall
    ) -> writeside_pb2.HandleEventResponse:
        return writeside_pb2.HandleEventResponse(resulting_state=request.event)

    async def close(self) -> None:
        return None


class FakePeers:
    """Peer hosts that are never reached (a host whose shards are all local)."""

    async def forward_command(self, route: object, request: object, timeout: float) -> None:
        raise AssertionError("nothing is forwarded in this test")

    async def forward_state(self, route: object, request: object, timeout: float) -> None:
        raise AssertionError("nothing is forwarded in this test")


class FakeHost:
    """A shard host in the coordinator's process: serves what it is assigned; ``silent``
    makes it stop answering ``shards``; ``released`` records every release."""

    def __init__(self, active: int = 0) -> None:
        self.owned: dict[int, int] = {}
        self.active = active
        self.silent = False
        self.released: list[int] = []

    async def attach(self, coordinator: object) -> None:
        pass

    async def assign(self, shards: Sequence[int]) -> dict[int, int]:
        for shard in shards:
            self.owned[shard] = self.owned.get(shard, 0) + 1
        return {shard: self.owned[shard] for shard in shards}

    async def release(self, shards: Sequence[int]) -> None:
        for shard in shards:
            self.owned.pop(shard, None)
        self.released.extend(shards)

    async def set_routes(self, routes: object) -> None:
        pass

    async def ping(self) -> str:
        return "ok"

    async def shards(self) -> list[ShardInfo]:
        if self.silent:
            await asyncio.sleep(3600)
        return [ShardInfo(s, e, self.active + s) for s, e in sorted(self.owned.items())]


class FakeSubscriptionJournal:
    """An in-memory journal for :class:`cos.subscription.SubscriptionHub`: ``add`` commits
    one event with the shard's next position."""

    def __init__(self) -> None:
        self.shards: dict[int, list[StoredEvent]] = {}
        self._revisions: dict[str, int] = {}

    def add(self, shard: int, entity_id: str) -> StoredEvent:
        events = self.shards.setdefault(shard, [])
        revision = self._revisions[entity_id] = self._revisions.get(entity_id, 0) + 1
        event = StoredEvent(
            shard=shard,
            position=len(events) + 1,
            entity_id=entity_id,
            revision=revision,
            event_type="test",
            created_at=datetime.now(timezone.utc),
            payload=b"",
        )
        events.append(event)
        return event

    async def read_shard(self, shard: int, after: int, limit: int) -> list[StoredEvent]:
        await asyncio.sleep(0)
        return self.shards.get(shard, [])[after : after + limit]

    async def read_entity(
        self, shard: int, entity_id: str, *, after: int, after_revision: int, limit: int
    ) -> list[StoredEvent]:
        await asyncio.sleep(0)
        events = self.shards.get(shard, [])[after:]
        found = [e for e in events if e.entity_id == entity_id and e.revision > after_revision]
        return found[:limit]

    async def last_positions(self, shards: Sequence[int]) -> dict[int, int]:
        return {shard: len(self.shards.get(shard, [])) for shard in shards}


class FakeAnnouncing:
    """Records each announcement; holds the first until ``release`` is set."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()

    async def announce(self, shards: Sequence[int]) -> None:
        self.sent.append(list(shards))
        self.arrived.set()
        if len(self.sent) == 1:
            await self.release.wait()
