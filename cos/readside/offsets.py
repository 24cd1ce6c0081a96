"""Read-side offsets, the port: how far each read side got in each shard, whether an
operator paused it there, and its last delivery failure. Every change is durable when the
call returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Offset:
    """Where a read side stands in one shard, and why it stopped there, if it did."""

    read_side_id: str
    shard: int
    position: int
    paused: bool
    stopped_reason: str | None = None


@dataclass(frozen=True)
class LastError:
    """The last failed delivery of a read side in one shard, and when it was recorded."""

    text: str
    at: datetime


@dataclass(frozen=True)
class ShardStatus:
    """A read side in one shard against the journal, read at one instant: its offset, the
    shard's last journal position, how old the oldest undelivered event is (0 when caught
    up), and its last delivery failure (kept after delivery recovers)."""

    offset: Offset
    journal_position: int
    lag_seconds: float = 0.0
    last_error: LastError | None = None


class OffsetStore(Protocol):
    """Offsets and paused flags per (read side, shard).

    Operator changes (``set_paused``, ``restart``, ``skip``) clear a stop reason and
    tell the runners of the read side on every host, through the store's own channel.
    """

    async def prepare(self, read_side_id: str, shards: Sequence[int], start_paused: bool) -> None:
        """Create missing rows; ``start_paused`` (autoStart=false) pauses every shard."""
        ...

    async def get(self, read_side_id: str, shard: int) -> Offset:
        """The offset of one shard (position 0, not paused, when it has no row yet)."""
        ...

    async def status(self, read_side_id: str, shards: Sequence[int]) -> list[ShardStatus]:
        """Where the read side stands against the journal in ``shards``, in that order."""
        ...

    async def list(self, read_side_id: str, shards: Sequence[int]) -> list[Offset]:
        """The offsets of ``shards``, in that order."""
        ...

    async def advance(self, read_side_id: str, shard: int, expected: int, position: int) -> bool:
        """Move the offset from ``expected`` to ``position``; False when it was changed
        meanwhile (then the runner reads it again instead of overwriting)."""
        ...

    async def set_stopped(self, read_side_id: str, shard: int, reason: str | None) -> None:
        """Record why a failure policy stopped the runner of ``shard`` (None: it runs)."""
        ...

    async def record_failure(self, read_side_id: str, shard: int, text: str) -> None:
        """Keep ``text`` as the last delivery failure of ``shard``, timed by the store. Only
        a later failure replaces it: neither a success nor an operator action clears it."""
        ...

    async def set_paused(self, read_side_id: str, shards: Sequence[int], paused: bool) -> None:
        """Pause or resume ``shards``."""
        ...

    async def restart(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Clear the offsets of ``shards``: delivery starts again from the first event."""
        ...

    async def skip(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Move past the event at the current offset of each shard, where there is one."""
        ...
