"""The read-side runners of one shard host: started with its shards, told of
operator changes through PostgreSQL ``LISTEN``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from cos.journal.database import DatabaseTarget
from cos.journal.store import JournalStore
from cos.readside.client import ReadHandlerClient
from cos.readside.config import ReadSideConfig
from cos.readside.offsets import CONTROL_CHANNEL, PostgresOffsetStore
from cos.readside.runner import ReadSideRunner, RunnerTiming

log = logging.getLogger(__name__)


class ReadSideHosting:
    """Runners for every enabled read side in every shard this host owns."""

    def __init__(
        self,
        read_sides: Sequence[ReadSideConfig],
        journal: JournalStore,
        offsets: PostgresOffsetStore,
        timing: RunnerTiming,
    ) -> None:
        self._read_sides = [r for r in read_sides if r.enabled]
        self._journal = journal
        self._offsets = offsets
        self._timing = timing
        self._clients = {r.read_side_id: ReadHandlerClient(r) for r in self._read_sides}
        self._runners: dict[tuple[str, int], ReadSideRunner] = {}
        self._listener: asyncpg.Connection | None = None

    async def listen(self, target: DatabaseTarget) -> None:
        """Hear operator changes made through any host."""
        if not self._read_sides:
            return
        self._listener = await asyncpg.connect(**target.connect_kwargs())
        await self._listener.add_listener(CONTROL_CHANNEL, self._on_control)

    def _on_control(self, _conn: object, _pid: int, _channel: str, read_side_id: str) -> None:
        self.poke(read_side_id)

    async def start_shards(self, shards: Sequence[int]) -> list[ReadSideRunner]:
        """Create the offset rows and start a runner per (read side, shard)."""
        started = []
        for config in self._read_sides:
            await self._offsets.prepare(config.read_side_id, shards, not config.auto_start)
            for shard in shards:
                runner = ReadSideRunner(
                    config,
                    shard,
                    self._journal,
                    self._offsets,
                    self._clients[config.read_side_id].deliver,
                    self._timing,
                )
                self._runners[(config.read_side_id, shard)] = runner
                runner.start()
                started.append(runner)
        return started

    async def stop_shards(self, shards: Sequence[int]) -> None:
        """Stop the runners of ``shards`` (the shards moved to another host)."""
        leaving = [key for key in self._runners if key[1] in shards]
        await asyncio.gather(*(self._runners.pop(key).stop() for key in leaving))

    def poke(self, read_side_id: str, shards: Sequence[int] | None = None) -> None:
        """Make the runners of ``read_side_id`` (in ``shards``, or all) re-read their rows."""
        for (rid, shard), runner in self._runners.items():
            if rid == read_side_id and (shards is None or shard in shards):
                runner.poke()

    def runner(self, read_side_id: str, shard: int) -> ReadSideRunner | None:
        """The runner of one (read side, shard) on this host, if any."""
        return self._runners.get((read_side_id, shard))

    async def stop(self) -> None:
        """Stop every runner and close the handler channels and the listener."""
        await asyncio.gather(*(runner.stop() for runner in self._runners.values()))
        self._runners.clear()
        for client in self._clients.values():
            await client.close()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
