"""Spans and metrics of the journal writes: a wrapper around each shard's journal writer
(one span per command's append, in the command's trace, with the positions it got), and a
listener of every shard's commits (the size and time of each group-commit transaction)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Sequence

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from cos.storage import EntityAppend
from cos.telemetry._instruments import Instruments, traceparent
from cos.telemetry._metrics import Metrics
from cos.writeside import CommitListener, Committed, Flush, JournalWriter, Shard


class ObservedJournalWriter:
    """A shard's :class:`cos.writeside.group_commit.JournalWriter`, each write a span.

    A span per command rather than per transaction: each trace shows its own wait for the
    commit, and the batch it shared is an attribute. The events keep their command's trace
    context, for the read-side deliveries to link to.
    """

    def __init__(self, inner: JournalWriter, *, instruments: Instruments) -> None:
        self._inner = inner
        self._instruments = instruments

    @property
    def shard(self) -> int:
        """The shard written."""
        return self._inner.shard

    @property
    def epoch(self) -> int:
        """The lease epoch every write is fenced with."""
        return self._inner.epoch

    def add_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` after every committed transaction."""
        self._inner.add_listener(listener)

    def submit(
        self, item: EntityAppend, after: asyncio.Future[Committed] | None = None
    ) -> asyncio.Future[Committed]:
        """Submit ``item`` inside a span (none when the command is not sampled), which
        ends when the write is committed or has failed."""
        span = self._instruments.child(
            "cos.journal.append", SpanKind.INTERNAL, {"cos.shard": self.shard}
        )
        if span is None:  # nothing to link to
            return self._inner.submit(item, after)
        try:
            future = self._inner.submit(
                dataclasses.replace(item, trace_context=traceparent(span)), after
            )
        except BaseException as exc:
            _end(span, exc)
            raise
        future.add_done_callback(functools.partial(_ended, span))
        return future

    async def write(self, item: EntityAppend) -> Committed:
        """Write ``item`` inside a span (see :meth:`submit`)."""
        return await self.submit(item)


def _ended(span: Span, future: asyncio.Future[Committed]) -> None:
    if future.cancelled():
        _end(span, asyncio.CancelledError())
    elif (error := future.exception()) is not None:
        _end(span, error)
    else:
        committed = future.result()
        span.set_attributes(
            {
                "cos.journal.batch_size": committed.batch_size,
                "cos.journal.position.first": committed.first,
                "cos.journal.position.last": committed.last,
            }
        )
        span.end()


def _end(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()


class FlushMetrics:
    """Records the size and time of every journal transaction of the shards served here
    (a :class:`cos.sharding.host.ShardEvents`)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def shards_started(self, shards: Sequence[Shard]) -> None:
        """Listen to the commits of ``shards``."""
        for shard in shards:
            shard.add_commit_listener(self._record)

    async def shards_stopped(self, shards: Sequence[int]) -> None:
        """Nothing to do: a shard that left stops committing here."""

    def _record(self, flush: Flush) -> None:
        self._metrics.flush_duration.record(flush.seconds * 1000)
        self._metrics.batch_size.record(flush.batch_size)
