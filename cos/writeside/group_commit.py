"""Group commit: one transaction for the appends of many entities of a shard."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.trace import SpanKind, Status, StatusCode

from cos.errors import ConflictError, CosError, JournalRejectedError, JournalUnavailableError
from cos.storage import EntityAppend, JournalStore
from cos.telemetry.instruments import NO_INSTRUMENTS, Instruments, traceparent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Committed:
    """Where a write landed: its events' positions in the shard, and how many writes
    shared its transaction."""

    first: int
    last: int
    batch_size: int


_Waiting = tuple[EntityAppend, "asyncio.Future[Committed]"]


class GroupCommitWriter:
    """Appends for one shard. While a flush is in flight, new appends wait and go
    together in the next transaction, so throughput grows with concurrency instead
    of paying one commit per command."""

    def __init__(
        self,
        store: JournalStore,
        shard: int,
        epoch: int,
        max_batch: int,
        instruments: Instruments = NO_INSTRUMENTS,
    ) -> None:
        self._store = store
        self._instruments = instruments
        self._shard = shard
        self.epoch = epoch
        self._max_batch = max_batch
        self._pending: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every committed flush (read sides wake on it)."""
        self._listeners.append(listener)

    async def write(self, item: EntityAppend) -> Committed:
        """Return once ``item`` is committed; raise if its transaction failed."""
        instruments = self._instruments
        if instruments.tracer is None:
            return await self._write(item)
        # A span per command (in the command's trace) rather than per transaction: each
        # trace shows its own wait for the commit, and the batch it shared is an attribute.
        span = instruments.child(
            "cos.journal.append", SpanKind.INTERNAL, {"cos.shard": self._shard}
        )
        if span is None:  # the command is not sampled: nothing to link to
            return await self._write(item)
        try:
            # The events keep their command's context, for read-side deliveries to link to.
            committed = await self._write(
                dataclasses.replace(item, trace_context=traceparent(span))
            )
            span.set_attributes(
                {
                    "cos.journal.batch_size": committed.batch_size,
                    "cos.journal.position.first": committed.first,
                    "cos.journal.position.last": committed.last,
                }
            )
            return committed
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()

    async def _write(self, item: EntityAppend) -> Committed:
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[_Waiting]) -> None:
        started = time.perf_counter()
        try:
            last = await self._store.append(self._shard, self.epoch, [item for item, _ in batch])
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
            log.exception("journal append failed for shard %s", self._shard)
            _settle(batch, JournalUnavailableError(f"journal write failed: {exc}"))
        else:
            metrics = self._instruments.metrics
            if metrics is not None:
                metrics.flush_duration.record((time.perf_counter() - started) * 1000)
                metrics.batch_size.record(len(batch))
            _commit(batch, last)
            for listener in self._listeners:
                listener()


def _commit(batch: list[_Waiting], last: int) -> None:
    # The store numbers the batch's events consecutively, in batch order, up to ``last``.
    position = last - sum(len(item.events) for item, _ in batch)
    for item, future in batch:
        first, position = position + 1, position + len(item.events)
        if not future.done():
            future.set_result(Committed(first, position, len(batch)))


def _settle(batch: list[_Waiting], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
