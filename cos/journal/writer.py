"""Group commit: one transaction for the appends of many entities of a shard."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cos.errors import ConflictError, CosError, JournalRejectedError, JournalUnavailableError
from cos.journal.store import EntityAppend, JournalStore

log = logging.getLogger(__name__)

_Waiting = tuple[EntityAppend, "asyncio.Future[None]"]


class GroupCommitWriter:
    """Appends for one shard. While a flush is in flight, new appends wait and go
    together in the next transaction, so throughput grows with concurrency instead
    of paying one commit per command."""

    def __init__(self, store: JournalStore, shard: int, epoch: int, max_batch: int) -> None:
        self._store = store
        self._shard = shard
        self.epoch = epoch
        self._max_batch = max_batch
        self._pending: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every committed flush (read sides wake on it)."""
        self._listeners.append(listener)

    async def write(self, item: EntityAppend) -> None:
        """Return once ``item`` is committed; raise if its transaction failed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all())
        await future

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[_Waiting]) -> None:
        try:
            await self._store.append(self._shard, self.epoch, [item for item, _ in batch])
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
            _settle(batch, None)
            for listener in self._listeners:
                listener()


def _settle(batch: list[_Waiting], error: BaseException | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
