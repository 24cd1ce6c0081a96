"""Operator actions on read sides: offsets, status, pause, resume, skip, restart."""

from __future__ import annotations

from collections.abc import Iterable

from cos.errors import InvalidRequestError, NotFoundError, shorten
from cos.readside._hosting import ReadSideHosting
from cos.storage import Offset, OffsetStore, ShardStatus


class ReadSideManager:
    """Validates a request, makes the change durable, then tells the runners."""

    def __init__(
        self,
        read_side_ids: Iterable[str],
        num_shards: int,
        offsets: OffsetStore,
        hosting: ReadSideHosting,
    ) -> None:
        self._known = set(read_side_ids)
        self._num_shards = num_shards
        self._offsets = offsets
        self._hosting = hosting

    def _shards(self, read_side_id: str, shard: int | None) -> list[int]:
        if read_side_id not in self._known:
            known = ", ".join(sorted(self._known)) or "none configured"
            raise NotFoundError(
                f"read side {shorten(read_side_id)} is not configured (known: {known})"
            )
        if shard is None:
            return list(range(self._num_shards))
        if not 0 <= shard < self._num_shards:
            raise InvalidRequestError(
                f"shard number {shard} is out of range: shards are 0..{self._num_shards - 1}"
            )
        return [shard]

    async def offsets(self, read_side_id: str, shard: int | None = None) -> list[Offset]:
        """Where the read side stands in one shard or all."""
        return await self._offsets.list(read_side_id, self._shards(read_side_id, shard))

    async def status(self, read_side_id: str, shard: int | None = None) -> list[ShardStatus]:
        """Where the read side stands against the journal (events and seconds behind), why
        it stopped, if it did, and its last delivery failure."""
        return await self._offsets.status(read_side_id, self._shards(read_side_id, shard))

    async def pause(self, read_side_id: str, shard: int | None = None) -> None:
        """Stop delivery at the next event boundary."""
        shards = self._shards(read_side_id, shard)
        await self._offsets.set_paused(read_side_id, shards, True)
        self._hosting.poke(read_side_id, shards)

    async def resume(self, read_side_id: str, shard: int | None = None) -> None:
        """Continue delivery where it stopped."""
        shards = self._shards(read_side_id, shard)
        await self._offsets.set_paused(read_side_id, shards, False)
        self._hosting.poke(read_side_id, shards)

    async def restart(self, read_side_id: str, shard: int | None = None) -> None:
        """Deliver again from the first event."""
        shards = self._shards(read_side_id, shard)
        await self._offsets.restart(read_side_id, shards)
        self._hosting.poke(read_side_id, shards)

    async def skip(self, read_side_id: str, shard: int | None = None) -> None:
        """Move past the event at the current offset and continue."""
        shards = self._shards(read_side_id, shard)
        await self._offsets.skip(read_side_id, shards)
        self._hosting.poke(read_side_id, shards)
