"""A shard: its entities' mailboxes and cache, the write handler calls and the journal writer."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from google.protobuf import any_pb2

from chief_of_state.v1 import writeside_pb2
from cos.errors import ConflictError, DeadlineExceededError, ShardNotOwnedError, shorten
from cos.settings import CosSettings
from cos.storage import IdempotencyRecord, JournalStore
from cos.telemetry.instruments import NO_INSTRUMENTS, Instruments
from cos.writeside import entity as logic
from cos.writeside.commands import CommandRequest
from cos.writeside.entity import EntityState, Metadata
from cos.writeside.group_commit import GroupCommitWriter
from cos.writeside.guards import (
    NO_GUARDS,
    Guards,
    KeyUse,
    check_expected_revision,
    check_same_command,
    guards_of,
    needs_event,
    original_reply,
)
from cos.writeside.handler import HandlerCall, WriteHandler
from cos.writeside.limits import check_event, check_record_size

# The W3C trace context always reaches the handler, whatever is configured.
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


@dataclass
class _Entity:
    """An entity in memory: its mailbox (a FIFO lock) and its last known state."""

    entity_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    current: EntityState | None = None
    last_used: float = 0.0
    busy: int = 0


class Shard:
    """Serves the entities of one shard: serial per entity, concurrent across entities."""

    def __init__(
        self,
        number: int,
        epoch: int,
        store: JournalStore,
        handler: WriteHandler,
        settings: CosSettings,
        cache_size: int,
        instruments: Instruments = NO_INSTRUMENTS,
    ) -> None:
        self.number = number
        self._store = store
        self._handler = handler
        self._settings = settings
        self._cache_size = cache_size
        self._entities: OrderedDict[str, _Entity] = OrderedDict()
        self._writer = GroupCommitWriter(
            store, number, epoch, settings.journal_max_batch, instruments
        )
        # (and the configured propagators' headers, such as b3, when tracing is on)
        self._propagated = (
            *settings.write_side_propagated_headers,
            *TRACE_HEADERS,
            *sorted(instruments.headers),
        )
        self._closed = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._snapshot_every = None if settings.disable_snapshot else settings.snapshot_frequency

    @property
    def epoch(self) -> int:
        return self._writer.epoch

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each commit of this shard's journal."""
        self._writer.add_listener(listener)

    @property
    def active_entities(self) -> int:
        return len(self._entities)

    async def run(self, request: CommandRequest) -> EntityState:
        """Run the command in the entity's mailbox; returns the state after it."""
        guards = guards_of(request.metadata, request.command)  # malformed: refused at once
        entity = self._checkout(request.entity_id)
        # Shielded: a caller that goes away must not cut a command between its
        # journal commit and the cache update. The entity is released by the
        # shielded task itself, so it stays in the cache until the work is done.
        return await asyncio.shield(self._run(entity, request, guards))

    async def state_of(self, entity_id: str) -> EntityState:
        """The entity's state after its last committed command."""
        entity = self._checkout(entity_id)
        try:
            if entity.current is not None:
                return entity.current
            async with entity.lock:
                return await self._load(entity)
        finally:
            self._release(entity)

    async def _run(self, entity: _Entity, request: CommandRequest, guards: Guards) -> EntityState:
        try:
            async with entity.lock:
                if request.deadline is not None and time.monotonic() >= request.deadline:
                    # Its caller has given up: it must not run later, unseen.
                    raise DeadlineExceededError(
                        f"the caller's deadline passed while the command waited behind"
                        f" others of entity {shorten(entity.entity_id)}; it was not run"
                    )
                current = await self._load(entity)
                if guards is NO_GUARDS:
                    return await self._apply(entity, current, request.command, request.metadata)
                return await self._guarded(entity, current, request, guards)
        finally:
            self._release(entity)

    # -- guards: idempotency key, then expected revision (cos/writeside/guards.py) ---------

    async def _guarded(
        self, entity: _Entity, current: EntityState, request: CommandRequest, guards: Guards
    ) -> EntityState:
        key = guards.key
        if key is not None:
            found = await self._store.find_idempotency(entity.entity_id, key.key)
            if found is not None:
                return await self._replay(entity, current, found, key)
        if guards.expected_revision is not None:
            check_expected_revision(entity.entity_id, current.revision, guards.expected_revision)
        try:
            return await self._apply(entity, current, request.command, request.metadata, key)
        except ConflictError:
            if key is None:
                raise
            # The key was recorded meanwhile by another writer of the entity (a zombie
            # owner, a race across a hand-over): its reply is the answer, if it was ours.
            found = await self._store.find_idempotency(entity.entity_id, key.key)
            if found is None:
                raise
            return await self._replay(entity, await self._load(entity), found, key)

    async def _replay(
        self, entity: _Entity, current: EntityState, found: IdempotencyRecord, key: KeyUse
    ) -> EntityState:
        """The original reply of the command ``found`` records; the handler is not called."""
        check_same_command(entity.entity_id, found, key)
        event = None
        if needs_event(found, current):
            event = await self._store.event_at(entity.entity_id, found.revision)
        return original_reply(entity.entity_id, found, current, event)

    async def _apply(
        self,
        entity: _Entity,
        current: EntityState,
        command: any_pb2.Any,
        metadata: Metadata,
        key: KeyUse | None = None,
    ) -> EntityState:
        # COS_COMMAND_HANDLER_TIMEOUT is the handler time of the whole command.
        call = HandlerCall(
            logic.select_headers(metadata, self._propagated),
            time.monotonic() + self._settings.command_handler_timeout,
        )
        reply = await self._handler.handle_command(
            writeside_pb2.HandleCommandRequest(
                command=command, prior_state=current.state, prior_event_meta=current.meta
            ),
            call,
        )
        events = logic.events_of(reply)
        if not events:
            if key is not None:  # a no-op is remembered too: its retry must not run
                await self._store.remember(
                    self.number, self.epoch, entity.entity_id, key.at(current.revision)
                )
            return current
        for number, event in enumerate(events, start=1):
            check_event(event, number)
        settings = self._settings
        if settings.write_side_proto_validation:
            logic.check_types(events, settings.write_side_event_protos, "event")
        headers = logic.to_headers(logic.select_headers(metadata, settings.write_persisted_headers))
        now = datetime.now(timezone.utc)
        state, wrappers = current.state, []
        for offset, event in enumerate(events, start=1):
            meta = logic.event_meta(entity.entity_id, current.revision + offset, now, headers)
            result = await self._handler.handle_event(
                writeside_pb2.HandleEventRequest(event=event, prior_state=state, event_meta=meta),
                call,
            )
            state = logic.require_state(result, event)
            wrapper = logic.wrap_event(event, state, meta)
            check_record_size(wrapper, settings.max_message_bytes)
            wrappers.append(wrapper)
        if settings.write_side_proto_validation:
            logic.check_types([state], settings.write_side_state_protos, "state")
        append = logic.build_append(
            entity.entity_id, current.revision, wrappers, self._snapshot_every
        )
        if key is not None:  # committed with the events, in their transaction
            append = dataclasses.replace(
                append, idempotency=key.at(int(wrappers[-1].meta.revision_number))
            )
        try:
            await self._writer.write(append)
        except BaseException:
            entity.current = None  # the commit may or may not have happened
            raise
        entity.current = EntityState(state, wrappers[-1].meta)
        return entity.current

    async def _load(self, entity: _Entity) -> EntityState:
        if entity.current is None:
            record = await self._store.latest(entity.entity_id)
            entity.current = logic.recovered_state(entity.entity_id, record)
        return entity.current

    async def close(self, timeout: float) -> bool:
        """Refuse new calls and wait for in-flight ones; False if some outlived ``timeout``."""
        self._closed = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _checkout(self, entity_id: str) -> _Entity:
        if self._closed:
            raise ShardNotOwnedError(f"shard {self.number} is being handed over")
        self._inflight += 1
        self._idle.clear()
        entity = self._entities.get(entity_id)
        if entity is None:
            entity = self._entities[entity_id] = _Entity(entity_id)
        else:
            self._entities.move_to_end(entity_id)
        # Busy before evicting: an entity in use must never leave the cache, or a
        # second command would get a second mailbox for the same entity.
        entity.busy += 1
        self._evict_overflow()
        return entity

    def _release(self, entity: _Entity) -> None:
        entity.busy -= 1
        entity.last_used = time.monotonic()
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    def _evict_overflow(self) -> None:
        excess = len(self._entities) - self._cache_size
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

    def entity_ids(self) -> Sequence[str]:
        """Ids of the entities in memory, least recently used first."""
        return list(self._entities)
