"""ShardHost: one per Ray node. Runs the gRPC server in its own event loop and
serves the shards assigned to it, so a command for a local shard never crosses
a Ray actor boundary."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from chief_of_state.v1 import manager_pb2_grpc, service_pb2_grpc
from cos.errors import ShardNotOwnedError
from cos.journal.database import DatabaseTarget
from cos.journal.postgres import PostgresJournalStore
from cos.readside.hosting import ReadSideHosting
from cos.readside.manager import ReadSideManager
from cos.readside.offsets import PostgresOffsetStore
from cos.readside.runner import RunnerTiming
from cos.service.command import ChiefOfStateServicer
from cos.service.manager import ReadSideManagerServicer
from cos.settings import CosSettings
from cos.sharding.routing import shard_of
from cos.sharding.shard import Shard
from cos.writeside.client import WriteHandlerClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardInfo:
    """What a host reports about one of its shards."""

    shard: int
    epoch: int
    active_entities: int


class ShardHost:
    """Owns shards and answers ``ChiefOfStateService`` on ``COS_ADDRESS:COS_PORT``."""

    def __init__(self, settings: CosSettings, target: DatabaseTarget, host_id: str) -> None:
        self.host_id = host_id
        self._settings = settings
        self._target = target
        self._shards: dict[int, Shard] = {}
        self._store: PostgresJournalStore | None = None
        self._handler: WriteHandlerClient | None = None
        self._server: grpc.aio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._read_sides: ReadSideHosting | None = None

    async def start(self) -> str:
        """Connect to the journal and start serving; returns the bound address."""
        logging.basicConfig(level=self._settings.log_level)
        settings = self._settings
        self._store = await PostgresJournalStore.connect(
            self._target,
            max_size=settings.db.pool_max_size,
            snapshots_to_retain=settings.num_snapshots_to_retain,
            logical_deletion=settings.journal_logical_deletion,
        )
        self._handler = WriteHandlerClient(settings)
        offsets = PostgresOffsetStore(self._store.pool)
        timing = RunnerTiming(
            backoff_min=settings.read_side_retry_min_seconds,
            backoff_max=settings.read_side_retry_max_seconds,
        )
        self._read_sides = ReadSideHosting(settings.read_sides, self._store, offsets, timing)
        await self._read_sides.listen(self._target)
        manager = ReadSideManager(
            [r.read_side_id for r in settings.read_sides],
            settings.num_shards,
            offsets,
            self._read_sides,
        )
        # so_reuseport off: a second server on the same port must fail, not share it.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        service_pb2_grpc.add_ChiefOfStateServiceServicer_to_server(
            ChiefOfStateServicer(self), server
        )
        manager_pb2_grpc.add_ReadSideManagerServiceServicer_to_server(
            ReadSideManagerServicer(manager), server
        )
        address = f"{settings.address}:{settings.port}"
        if server.add_insecure_port(address) == 0:
            raise OSError(f"cannot bind the gRPC server to {address}")
        await server.start()
        self._server = server
        self._sweeper = asyncio.create_task(self._passivate_forever())
        log.info("shard host %s: gRPC server started on %s", self.host_id, address)
        return address

    async def assign(self, shards: Sequence[int]) -> dict[int, int]:
        """Take the leases of ``shards`` (a higher epoch each) and start serving them."""
        assert self._store is not None and self._handler is not None, "start() first"
        new = [s for s in shards if s not in self._shards]
        epochs = await self._store.acquire_shards(new, self.host_id) if new else {}
        per_shard = max(1, self._settings.entity_cache_size // self._settings.num_shards)
        for shard, epoch in epochs.items():
            self._shards[shard] = Shard(
                shard, epoch, self._store, self._handler, self._settings, per_shard
            )
        if self._read_sides is not None:
            for runner in await self._read_sides.start_shards(sorted(epochs)):
                self._shards[runner.shard].add_commit_listener(runner.wake)
        return {s: self._shards[s].epoch for s in shards}

    def route(self, entity_id: str) -> Shard:
        """The local shard of ``entity_id``, or ShardNotOwnedError."""
        number = shard_of(entity_id, self._settings.num_shards)
        shard = self._shards.get(number)
        if shard is None:
            raise ShardNotOwnedError(f"shard {number} is not served by host {self.host_id}")
        return shard

    async def shards(self) -> list[ShardInfo]:
        """The shards this host serves."""
        return [
            ShardInfo(s.number, s.epoch, s.active_entities)
            for s in sorted(self._shards.values(), key=lambda s: s.number)
        ]

    async def ping(self) -> str:
        """Liveness probe for the driver and the coordinator."""
        return self.host_id

    async def _passivate_forever(self) -> None:
        idle = self._settings.passivation_idle_seconds
        while True:
            await asyncio.sleep(min(idle / 2, 30.0))
            try:
                dropped = sum(shard.passivate(idle) for shard in self._shards.values())
                if dropped:
                    log.debug("passivated %d idle entities", dropped)
            except Exception:
                log.exception("passivation sweep failed")

    async def stop(self) -> None:
        """Stop accepting commands, let in-flight ones finish, release connections."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            await self._server.stop(self._settings.shutdown_grace_seconds)
            self._server = None
        if self._read_sides is not None:
            await self._read_sides.stop()
        if self._handler is not None:
            await self._handler.close()
        if self._store is not None:
            await self._store.close()
        self._shards.clear()
