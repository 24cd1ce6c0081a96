"""The read-side runners of one node: started with its shards, stopped with them, and
poked when an operator changes a read side (through any node)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cos.readside._client import ReadHandler
from cos.readside._config import ReadSideConfig
from cos.readside._runner import ReadSideRunner, RunnerTiming
from cos.storage import JournalReader, OffsetStore


@dataclass(frozen=True)
class LagSample:
    """How far one read side is behind in one shard this node serves."""

    read_side_id: str
    shard: int
    events: int
    seconds: float


class CommitSource(Protocol):
    """A shard, as its runners see it: its number, and a signal after each commit."""

    number: int

    def add_commit_listener(self, listener: Callable[[object], None]) -> None: ...


class ReadSideHosting:
    """Runners for every enabled read side in every shard this node owns
    (the :class:`cos.sharding.host.ShardEvents` of its host)."""

    def __init__(
        self,
        read_sides: Sequence[ReadSideConfig],
        journal: JournalReader,
        offsets: OffsetStore,
        timing: RunnerTiming,
        handlers: Mapping[str, ReadHandler],
    ) -> None:
        self._read_sides = [r for r in read_sides if r.enabled]
        self._journal = journal
        self._offsets = offsets
        self._timing = timing
        self._handlers = {r.read_side_id: handlers[r.read_side_id] for r in self._read_sides}
        self._runners: dict[tuple[str, int], ReadSideRunner] = {}

    async def sample_lag(self) -> list[LagSample]:
        """How far each read side is behind in each shard served here, from the database
        (the same reading as ``cos-cli readside status``)."""
        shards: dict[str, list[int]] = {}
        for read_side_id, shard in list(self._runners):
            shards.setdefault(read_side_id, []).append(shard)
        samples = []
        for read_side_id, numbers in shards.items():
            for row in await self._offsets.status(read_side_id, sorted(numbers)):
                behind = max(0, row.journal_position - row.offset.position)
                samples.append(LagSample(read_side_id, row.offset.shard, behind, row.lag_seconds))
        return samples

    @property
    def active(self) -> bool:
        """True when some read side runs here (otherwise nothing needs to listen)."""
        return bool(self._read_sides)

    async def shards_started(self, shards: Sequence[CommitSource]) -> None:
        """Create the offset rows and start a runner per (read side, shard); each runner
        wakes on its shard's commits."""
        numbers = [shard.number for shard in shards]
        for config in self._read_sides:
            await self._offsets.prepare(config.read_side_id, numbers, not config.auto_start)
            for shard in shards:
                runner = ReadSideRunner(
                    config,
                    shard.number,
                    self._journal,
                    self._offsets,
                    self._handlers[config.read_side_id].deliver,
                    self._timing,
                )
                self._runners[(config.read_side_id, shard.number)] = runner
                runner.start()
                shard.add_commit_listener(runner.wake)

    async def shards_stopped(self, shards: Sequence[int]) -> None:
        """Stop the runners of ``shards`` (the shards moved to another node)."""
        leaving = [key for key in self._runners if key[1] in shards]
        await asyncio.gather(*(self._runners.pop(key).stop() for key in leaving))

    def poke(self, read_side_id: str | None, shards: Sequence[int] | None = None) -> None:
        """Make the runners of ``read_side_id`` (every read side for None), in ``shards``
        or all, re-read their offset rows."""
        for (rid, shard), runner in self._runners.items():
            if read_side_id in (None, rid) and (shards is None or shard in shards):
                runner.poke()

    async def stop(self) -> None:
        """Stop every runner, and close the handlers' channels."""
        await asyncio.gather(*(runner.stop() for runner in self._runners.values()))
        self._runners.clear()
        for handler in self._handlers.values():
            await handler.close()
