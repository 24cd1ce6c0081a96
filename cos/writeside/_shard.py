"""A shard: its entities' mailboxes and cache, the write handler calls and the journal writer.

Per-entity order lives here. Each entity has a mailbox, an ``asyncio.Lock`` whose waiters
are served first in, first out: the commands of one entity run their handler calls one at
a time, in the order they arrived, each on the state the one before produced, while other
entities run concurrently.

An entity's commands are pipelined: once a command's events are handed to the journal
writer, the next command of the entity runs its handler calls on the state those events
produce (the entity's ``tip``) while they are written, and the writes of several commands
go in one transaction. A reply still waits for its own events to be durable (a no-op's,
for those of the commands before it), and writes commit in the order they were handed
over. When one fails, nothing computed on its events is written or acknowledged: those
commands fail with ``NotWrittenError``, which the router answers by running them again on
the durable state. ``COS_ENTITY_PIPELINE_DEPTH`` bounds the commands of one entity whose
events are not yet durable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from google.protobuf import any_pb2

from chief_of_state.v1 import persistence_pb2, writeside_pb2
from cos.errors import (
    CosError,
    DeadlineExceededError,
    NotWrittenError,
    ShardNotOwnedError,
    shorten,
)
from cos.storage import JournalStore
from cos.transport import Metadata
from cos.writeside import _entity as logic
from cos.writeside._commands import CommandRequest
from cos.writeside._entities import Entity, EntityCache, outcome
from cos.writeside._entity import EntityState
from cos.writeside._group_commit import (
    CommitListener,
    Committed,
    GroupCommitWriter,
    JournalWriter,
)
from cos.writeside._guards import Guarded, Guards, KeyUse, check_expected_revision, guards_of
from cos.writeside._handler import HandlerCall, WriteHandler
from cos.writeside._limits import check_event, check_record_size
from cos.writeside._settings import ShardSettings

# The W3C trace context always reaches the handler, whatever is configured.
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")

log = logging.getLogger(__name__)


def _log_orphaned(entity_id: str, work: asyncio.Future[EntityState]) -> None:
    """Say how a command ended whose caller had gone away (cancelled its call): nobody
    else hears of it. Dropped for its caller's deadline is what the caller asked for;
    a refusal the runtime makes on purpose is a line without a traceback; anything else
    is a bug, with its traceback."""
    if work.cancelled() or work.exception() is None:
        return
    error = work.exception()
    if isinstance(error, DeadlineExceededError):
        log.info("command dropped: %s", error)
    elif isinstance(error, CosError):
        log.warning(
            "command of entity %s failed after its caller left: %s: %s",
            shorten(entity_id),
            type(error).__name__,
            error,
        )
    else:
        log.error(
            "command of entity %s failed after its caller left",
            shorten(entity_id),
            exc_info=error,
        )


@dataclass(frozen=True)
class ShardParts:
    """What every shard of a node shares, and how a new one is made."""

    journal: JournalStore
    handler: WriteHandler
    settings: ShardSettings
    cache_size: int  # entities in memory per shard
    max_message: int  # COS_MAX_MESSAGE_BYTES: an event with its state must fit
    # Request headers sent on to the handler besides the trace context.
    propagated: tuple[str, ...] = ()
    # Wraps each shard's journal writer (telemetry observes the writes through it).
    wrap_writer: Callable[[JournalWriter], JournalWriter] | None = None

    def new_shard(self, number: int, epoch: int) -> Shard:
        """Shard ``number``, writing with lease ``epoch``."""
        writer: JournalWriter = GroupCommitWriter(
            self.journal, number, epoch, self.settings.journal_max_batch
        )
        if self.wrap_writer is not None:
            writer = self.wrap_writer(writer)
        return Shard(number, writer, self)


class Shard:
    """Serves the entities of one shard: serial per entity, concurrent across entities."""

    def __init__(self, number: int, writer: JournalWriter, parts: ShardParts) -> None:
        self.number = number
        self._writer = writer
        self._store = parts.journal
        self._handler = parts.handler
        self._settings = parts.settings
        self._max_message = parts.max_message
        self._propagated = (*parts.propagated, *TRACE_HEADERS)
        self._guarded = Guarded(parts.journal)
        self._depth = parts.settings.entity_pipeline_depth
        self._entities = EntityCache(parts.cache_size)
        self._closed = False

    @property
    def epoch(self) -> int:
        return self._writer.epoch

    def add_commit_listener(self, listener: CommitListener) -> None:
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
        work = asyncio.ensure_future(self._run(entity, request, guards))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            # Nobody awaits it any more: its outcome is logged here, once.
            work.add_done_callback(functools.partial(_log_orphaned, request.entity_id))
            raise

    async def state_of(self, entity_id: str) -> EntityState:
        """The entity's state after its last committed command."""
        entity = self._checkout(entity_id)
        try:
            if entity.durable is not None:
                return entity.durable
            async with entity.lock:
                await self._load(entity)
                assert entity.durable is not None  # loaded, nothing in flight
                return entity.durable
        finally:
            self._release(entity)

    async def _run(self, entity: Entity, request: CommandRequest, guards: Guards) -> EntityState:
        try:
            async with entity.lock:
                if request.deadline is not None and time.monotonic() >= request.deadline:
                    # Its caller has given up: it must not run later, unseen.
                    raise DeadlineExceededError(
                        f"the caller's deadline passed while the command waited behind"
                        f" others of entity {shorten(entity.entity_id)}; it was not run"
                    )
                if guards.key is not None:
                    # Its key is looked up in the journal: every write before it must be
                    # there. It runs alone, its reply waited for in the mailbox.
                    await entity.drain()
                    return await self._guarded.run(
                        entity.entity_id,
                        await self._load(entity),
                        guards,
                        apply=lambda state, key: self._apply_now(
                            entity, state, request.command, request.metadata, key
                        ),
                        reload=lambda: self._reload(entity),
                    )
                while len(entity.writes) >= self._depth:  # COS_ENTITY_PIPELINE_DEPTH
                    await asyncio.wait([entity.writes[0]])
                current = await self._load(entity)
                if guards.expected_revision is not None:
                    check_expected_revision(
                        entity.entity_id, current.revision, guards.expected_revision
                    )
                reply = await self._apply(entity, current, request.command, request.metadata)
            # Out of the mailbox: the entity's next command runs while this one's events
            # are written.
            return await reply
        finally:
            self._release(entity)

    async def _apply_now(
        self,
        entity: Entity,
        current: EntityState,
        command: any_pb2.Any,
        metadata: Metadata,
        key: KeyUse | None,
    ) -> EntityState:
        return await (await self._apply(entity, current, command, metadata, key))

    async def _apply(
        self,
        entity: Entity,
        current: EntityState,
        command: any_pb2.Any,
        metadata: Metadata,
        key: KeyUse | None = None,
    ) -> Awaitable[EntityState]:
        """Run the command's handler calls and hand what they produced to the journal
        writer, with the record of its idempotency ``key`` when it has one; returns the
        reply, to be awaited: the new state once its events are durable."""
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
            return self._unchanged(entity.last_write, current)
        wrappers = await self._handle_events(entity, current, events, metadata, call)
        append = logic.build_append(
            entity.entity_id, current.revision, wrappers, self._settings.snapshot_every
        )
        if key is not None:  # committed with the events, in their transaction
            revision = int(wrappers[-1].meta.revision_number)
            append = dataclasses.replace(append, idempotency=key.at(revision))
        state = logic.state_from_event(wrappers[-1])
        write = self._writer.submit(append, entity.last_write)
        entity.writes.append(write)
        write.add_done_callback(functools.partial(entity.settled, state))
        entity.tip = state
        return self._written(write, state)

    @staticmethod
    async def _written(write: asyncio.Future[Committed], state: EntityState) -> EntityState:
        # Only this command awaits its write this way (others wait without cancelling it),
        # and a write cancelled with its waiter is written all the same.
        await write
        return state

    @staticmethod
    async def _unchanged(
        before: asyncio.Future[Committed] | None, state: EntityState
    ) -> EntityState:
        """A no-op's reply, ``state``: once the events it shows are durable."""
        if before is not None:
            try:
                await outcome(before)
            except Exception as exc:
                raise NotWrittenError(
                    f"not answered: the command before it failed to be journaled ({exc}),"
                    " so the state it ran on is not durable; nothing of it was written"
                ) from None
        return state

    async def _handle_events(
        self,
        entity: Entity,
        current: EntityState,
        events: Sequence[any_pb2.Any],
        metadata: Metadata,
        call: HandlerCall,
    ) -> list[persistence_pb2.EventWrapper]:
        """Each event's resulting state from the handler, and its journal record."""
        for number, event in enumerate(events, start=1):
            check_event(event, number)
        settings = self._settings
        if settings.proto_validation:
            logic.check_types(events, settings.event_protos, "event")
        headers = logic.to_headers(logic.select_headers(metadata, settings.persisted_headers))
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
            check_record_size(wrapper, self._max_message)
            wrappers.append(wrapper)
        if settings.proto_validation:
            logic.check_types([state], settings.state_protos, "state")
        return wrappers

    async def _load(self, entity: Entity) -> EntityState:
        """The state the entity's next command runs on (in its mailbox)."""
        if entity.broken:
            # A write failed: what was handed over after it is refused. Once nothing is in
            # flight, the journal holds the entity's state.
            await entity.drain()
            entity.tip, entity.broken = None, False
        if entity.tip is None:
            record = await self._store.latest(entity.entity_id)
            entity.tip = entity.durable = logic.recovered_state(entity.entity_id, record)
        return entity.tip

    async def _reload(self, entity: Entity) -> EntityState:
        """The entity's state read from the journal again (in its mailbox)."""
        await entity.drain()
        entity.tip = entity.durable = None
        return await self._load(entity)

    async def close(self, timeout: float) -> bool:
        """Refuse new calls and wait for in-flight ones; False if some outlived ``timeout``."""
        self._closed = True
        try:
            await asyncio.wait_for(self._entities.idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _checkout(self, entity_id: str) -> Entity:
        if self._closed:
            raise ShardNotOwnedError(f"shard {self.number} is being handed over")
        return self._entities.checkout(entity_id)

    def _release(self, entity: Entity) -> None:
        self._entities.release(entity)

    def passivate(self, idle_seconds: float, now: float | None = None) -> int:
        """Drop entities unused for ``idle_seconds``; returns how many left memory."""
        return self._entities.passivate(idle_seconds, now)

    def entity_ids(self) -> Sequence[str]:
        """Ids of the entities in memory, least recently used first."""
        return self._entities.ids()
