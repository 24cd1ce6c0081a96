"""The write side's sweeps, off the command path: idle entities leave memory, and expired
idempotency keys leave the journal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from cos.background import Background, every
from cos.storage import JournalStore
from cos.writeside._shard import Shard

log = logging.getLogger(__name__)

# Expired idempotency keys: deleted in batches of this size, this many batches a round at
# most, so a backlog never makes one round long.
_EXPIRY_BATCH = 1000
_EXPIRY_BATCHES = 10


async def forget_expired_keys(
    journal: JournalStore, batch: int = _EXPIRY_BATCH, batches: int = _EXPIRY_BATCHES
) -> int:
    """One round of the expired idempotency keys sweep: batches of ``batch`` until one
    comes back short, ``batches`` at most; returns how many keys went."""
    gone = 0
    for _ in range(batches):
        deleted = await journal.forget_expired_keys(batch)
        gone += deleted
        if deleted < batch:
            break
    return gone


class Sweeps:
    """The sweeps of one node's shards (``shards`` gives those it serves now)."""

    def __init__(
        self,
        shards: Callable[[], Iterable[Shard]],
        journal: JournalStore,
        *,
        idle_seconds: float,
        key_window_seconds: float,
    ) -> None:
        self._shards = shards
        self._journal = journal
        self._idle = idle_seconds
        self._key_window = key_window_seconds
        self._background = Background()

    def start(self) -> None:
        """Start both sweeps."""
        self._background.start(
            every(min(self._idle / 2, 30.0), self.passivate, log=log, what="passivation sweep")
        )
        # A lookup ignores an expired key by itself, and a new use of the key replaces its
        # row, so this only keeps the table small. Every node sweeps; SKIP LOCKED keeps
        # them from waiting on each other.
        self._background.start(
            every(
                min(self._key_window / 2, 60.0),
                self.forget_expired_keys,
                log=log,
                what="expired idempotency keys sweep",
            )
        )

    async def passivate(self) -> None:
        """Drop the entities idle for longer than the idle time from memory."""
        dropped = sum(shard.passivate(self._idle) for shard in list(self._shards()))
        if dropped:
            log.debug("passivated %d idle entities", dropped)

    async def forget_expired_keys(self) -> None:
        """One round of the expired idempotency keys sweep."""
        await forget_expired_keys(self._journal)

    async def stop(self) -> None:
        """Stop both sweeps."""
        await self._background.stop()
