"""The read-side runners of one node: started with its shards, stopped with them, and
poked when an operator changes a read side (through any node)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from cos.journal.store import JournalStore
from cos.readside.client import DEFAULT_READ_CALLS, ReadCalls, ReadHandlerClient
from cos.readside.config import ReadSideConfig
from cos.readside.offsets import OffsetStore
from cos.readside.runner import ReadSideRunner, RunnerTiming


class CommitSource(Protocol):
    """A shard, as its runners see it: its number, and a signal after each commit."""

    number: int

    def add_commit_listener(self, listener: Callable[[], None]) -> None: ...


class ReadSideHosting:
    """Runners for every enabled read side in every shard this node owns
    (the :class:`cos.sharding.host.ShardEvents` of its host)."""

    def __init__(
        self,
        read_sides: Sequence[ReadSideConfig],
        journal: JournalStore,
        offsets: OffsetStore,
        timing: RunnerTiming,
        calls: ReadCalls = DEFAULT_READ_CALLS,
    ) -> None:
        self._read_sides = [r for r in read_sides if r.enabled]
        self._journal = journal
        self._offsets = offsets
        self._timing = timing
        self._clients = {r.read_side_id: ReadHandlerClient(r, calls) for r in self._read_sides}
        self._runners: dict[tuple[str, int], ReadSideRunner] = {}

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
                    self._clients[config.read_side_id].deliver,
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
        """Stop every runner and close the handler channels."""
        await asyncio.gather(*(runner.stop() for runner in self._runners.values()))
        self._runners.clear()
        for client in self._clients.values():
            await client.close()
