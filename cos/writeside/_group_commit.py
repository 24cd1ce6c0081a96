"""Group commit: one transaction for the appends of many entities of a shard.

A shard hands each command's events to its :class:`JournalWriter` and replies only once
their write is committed: durability before the reply. The writer behind it is a
:class:`GroupCommitWriter`, which the runtime may wrap (telemetry observes each write).

Writes are committed in the order they were submitted. A write may name the one it comes
``after`` (the previous write of the same entity, whose events it was computed on): when
that one fails, this one is not written (``NotWrittenError``), nor is anything after it,
so an entity's journal never has a gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cos.errors import (
    ConflictError,
    CosError,
    JournalRejectedError,
    JournalUnavailableError,
    NotWrittenError,
    shorten,
)
from cos.storage import EntityAppend, JournalStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Committed:
    """Where a write landed: its events' positions in the shard, and how many writes
    shared its transaction."""

    first: int
    last: int
    batch_size: int


@dataclass(frozen=True, slots=True)
class Flush:
    """One committed transaction of a shard: how many writes it carried and how long it
    took, in seconds."""

    shard: int
    batch_size: int
    seconds: float


CommitListener = Callable[[Flush], None]


class JournalWriter(Protocol):
    """What a shard writes its commands' events through."""

    @property
    def shard(self) -> int:
        """The shard written."""
        ...

    @property
    def epoch(self) -> int:
        """The lease epoch every write is fenced with."""
        ...

    def add_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` after every committed transaction."""
        ...

    def submit(
        self, item: EntityAppend, after: asyncio.Future[Committed] | None = None
    ) -> asyncio.Future[Committed]:
        """Queue ``item`` for writing, after ``after`` (see the module): the future is
        done once it is committed, or failed with why it was not."""
        ...

    async def write(self, item: EntityAppend) -> Committed:
        """Return once ``item`` is committed; raise if its transaction failed."""
        ...


@dataclass(frozen=True, slots=True)
class _Waiting:
    item: EntityAppend
    future: asyncio.Future[Committed]
    after: asyncio.Future[Committed] | None


class GroupCommitWriter:
    """Appends for one shard. While a flush is in flight, new appends wait and go
    together in the next transaction, so throughput grows with concurrency instead
    of paying one commit per command."""

    def __init__(self, store: JournalStore, shard: int, epoch: int, max_batch: int) -> None:
        self._store = store
        self.shard = shard
        self.epoch = epoch
        self._max_batch = max_batch
        self._pending: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self._listeners: list[CommitListener] = []

    def add_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` after every committed flush (read sides wake on it)."""
        self._listeners.append(listener)

    def submit(
        self, item: EntityAppend, after: asyncio.Future[Committed] | None = None
    ) -> asyncio.Future[Committed]:
        """Queue ``item`` for the next transaction, after ``after`` (see the module)."""
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._pending.append(_Waiting(item, future, after))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all())
        return future

    async def write(self, item: EntityAppend) -> Committed:
        """Return once ``item`` is committed; raise if its transaction failed."""
        return await self.submit(item)

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[_Waiting]) -> None:
        batch = _writable(batch)
        if not batch:
            return
        started = time.perf_counter()
        try:
            last = await self._store.append(self.shard, self.epoch, [w.item for w in batch])
        except (ConflictError, JournalRejectedError) as exc:
            if len(batch) == 1:
                _settle(batch, exc)
            else:
                # One command's bad data must not fail the others of its transaction:
                # halve the batch until the culprit is alone (log2 of the batch in extra
                # transactions); the rest commits.
                half = len(batch) // 2
                await self._flush(batch[:half])
                await self._flush(batch[half:])
        except CosError as exc:
            _settle(batch, exc)
        except Exception as exc:
            log.exception("journal append failed for shard %s", self.shard)
            _settle(batch, JournalUnavailableError(f"journal write failed: {exc}"))
        else:
            _commit(batch, last)
            flush = Flush(self.shard, len(batch), time.perf_counter() - started)
            for listener in self._listeners:
                listener(flush)


def _writable(batch: list[_Waiting]) -> list[_Waiting]:
    """The writes of ``batch`` whose ``after`` did not fail; the others fail with
    ``NotWrittenError``, in order, so that one refused refuses those after it. (An
    ``after`` not done yet is in this batch: they commit or fail together. One whose
    waiter was cancelled is written all the same: it went before.)"""
    kept = []
    for waiting in batch:
        after, why = waiting.after, None
        if after is not None and after.done() and not after.cancelled():
            why = after.exception()
        if why is not None:
            _settle(
                [waiting],
                NotWrittenError(
                    f"not written: it ran on the events of the command of entity"
                    f" {shorten(waiting.item.entity_id)} before it, which were not"
                    f" journaled ({why}); nothing of it was written"
                ),
            )
        else:
            kept.append(waiting)
    return kept


def _commit(batch: list[_Waiting], last: int) -> None:
    # The store numbers the batch's events consecutively, in batch order, up to ``last``.
    position = last - sum(len(w.item.events) for w in batch)
    for waiting in batch:
        first, position = position + 1, position + len(waiting.item.events)
        if not waiting.future.done():
            waiting.future.set_result(Committed(first, position, len(batch)))


def _settle(batch: list[_Waiting], error: BaseException) -> None:
    for waiting in batch:
        if not waiting.future.done():
            waiting.future.set_exception(error)
