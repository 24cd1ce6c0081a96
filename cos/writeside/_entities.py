"""A shard's entities in memory: each one's mailbox, states and writes in flight
(:class:`Entity`), and the cache that holds them (:class:`EntityCache`)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from cos.writeside._entity import EntityState
from cos.writeside._group_commit import Committed


@dataclass
class Entity:
    """An entity in memory: its mailbox (a FIFO lock); its state after the last command
    handled (``tip``, whose events may not be durable yet) and after the last one
    committed (``durable``), None until read from the journal; its writes in flight,
    oldest first; and whether one of them failed (``broken``: the tip holds events that
    are not in the journal)."""

    entity_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tip: EntityState | None = None
    durable: EntityState | None = None
    writes: deque[asyncio.Future[Committed]] = field(default_factory=deque)
    broken: bool = False
    last_used: float = 0.0
    busy: int = 0

    @property
    def last_write(self) -> asyncio.Future[Committed] | None:
        return self.writes[-1] if self.writes else None

    def settled(self, state: EntityState, write: asyncio.Future[Committed]) -> None:
        """A write of the entity is done (writes end in the order they were handed over)."""
        self.writes.remove(write)
        if write.cancelled() or write.exception() is not None:
            # It may or may not have committed (a connection lost in COMMIT): the state
            # is read from the journal again, once nothing of the entity is in flight.
            self.broken, self.durable = True, None
        elif not self.broken:
            self.durable = state

    async def drain(self) -> None:
        """Wait until none of the entity's writes is in flight."""
        while self.writes:
            await asyncio.wait([self.writes[-1]])


async def outcome(write: asyncio.Future[Committed]) -> Committed:
    """The write's result or error, waited for without cancelling it when this is."""
    await asyncio.wait([write])
    return write.result()


class EntityCache:
    """A shard's entities in memory, least recently used first, at most ``capacity`` of
    them idle. An entity is checked out for each call and released after it: one in use
    never leaves, or a second command would get a second mailbox for the same entity.
    ``idle`` is set while no call is in flight."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entities: OrderedDict[str, Entity] = OrderedDict()
        self._calls = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __len__(self) -> int:
        return len(self._entities)

    def checkout(self, entity_id: str) -> Entity:
        """The entity, in use until :meth:`release`."""
        self._calls += 1
        self.idle.clear()
        entity = self._entities.get(entity_id)
        if entity is None:
            entity = self._entities[entity_id] = Entity(entity_id)
        else:
            self._entities.move_to_end(entity_id)
        entity.busy += 1  # before evicting
        self._evict_overflow()
        return entity

    def release(self, entity: Entity) -> None:
        entity.busy -= 1
        entity.last_used = time.monotonic()
        self._calls -= 1
        if self._calls == 0:
            self.idle.set()

    def _evict_overflow(self) -> None:
        excess = len(self._entities) - self._capacity
        if excess <= 0:
            return
        idle = (e.entity_id for e in self._entities.values() if not e.busy)
        for entity_id in list(itertools.islice(idle, excess)):
            del self._entities[entity_id]

    def passivate(self, idle_seconds: float, now: float | None = None) -> int:
        """Drop entities unused for ``idle_seconds``; returns how many left memory."""
        deadline = (time.monotonic() if now is None else now) - idle_seconds
        idle = [
            e.entity_id for e in self._entities.values() if not e.busy and e.last_used < deadline
        ]
        for entity_id in idle:
            del self._entities[entity_id]
        return len(idle)

    def ids(self) -> list[str]:
        """Ids of the entities in memory, least recently used first."""
        return list(self._entities)
