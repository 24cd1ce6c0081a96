"""ShardHost: one per Ray node. Runs the gRPC server in its own event loop and
serves the shards assigned to it, so a command for a local shard never crosses
a Ray actor boundary; a command for another host's shard is forwarded to it
over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2

from chief_of_state.v1 import manager_pb2_grpc, service_pb2, service_pb2_grpc
from cos.errors import FencedError, ShardNotOwnedError, UnavailableError
from cos.journal.database import DatabaseTarget
from cos.journal.postgres import PostgresJournalStore
from cos.readside.hosting import ReadSideHosting
from cos.readside.manager import ReadSideManager
from cos.readside.offsets import PostgresOffsetStore
from cos.readside.runner import RunnerTiming
from cos.service.cluster import ClusterServicer
from cos.service.command import ChiefOfStateServicer
from cos.service.manager import ReadSideManagerServicer
from cos.settings import CosSettings
from cos.sharding.calls import call
from cos.sharding.entity import EntityState, Metadata
from cos.sharding.forward import OwnerMovedError, PeerClients
from cos.sharding.report import ShardReport
from cos.sharding.routing import shard_of
from cos.sharding.shard import Shard
from cos.v1 import cluster_pb2_grpc
from cos.writeside.client import WriteHandlerClient

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRY_PAUSE = 0.05
_COORDINATOR_TIMEOUT = 30.0


@dataclass(frozen=True)
class ShardInfo:
    """What a host reports about one of its shards."""

    shard: int
    epoch: int
    active_entities: int


@dataclass(frozen=True)
class Route:
    """Where a shard is served."""

    host_id: str
    address: str


class ShardHost:
    """Owns shards and answers ``ChiefOfStateService`` on its port."""

    def __init__(
        self,
        settings: CosSettings,
        target: DatabaseTarget,
        host_id: str,
        port: int | None = None,
        advertise: str | None = None,
    ) -> None:
        self.host_id = host_id
        self._settings = settings
        self._target = target
        self._port = settings.port if port is None else port
        self._advertise = advertise or f"127.0.0.1:{self._port}"
        self._shards: dict[int, Shard] = {}
        self._routes: dict[int, Route] = {}
        self._coordinator: Any = None
        self._routes_read = 0.0
        self._peers = PeerClients()
        self._store: PostgresJournalStore | None = None
        self._handler: WriteHandlerClient | None = None
        self._server: grpc.aio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._read_sides: ReadSideHosting | None = None
        self.fenced_writes = 0

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
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(ClusterServicer(self), server)
        address = f"{settings.address}:{self._port}"
        if server.add_insecure_port(address) == 0:
            raise OSError(f"cannot bind the gRPC server to {address}")
        await server.start()
        self._server = server
        self._sweeper = asyncio.create_task(self._passivate_forever())
        log.info("shard host %s: gRPC server started on %s", self.host_id, address)
        return address

    # -- ownership (called by the coordinator) ---------------------------------------

    async def attach(self, coordinator: Any) -> None:
        """Remember the coordinator, to ask it for routes when a shard has moved."""
        self._coordinator = coordinator

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

    async def release(self, shards: Sequence[int]) -> None:
        """Hand shards over: refuse new commands, let in-flight ones finish, stop runners."""
        leaving = [self._shards.pop(s) for s in shards if s in self._shards]
        grace = self._settings.shutdown_grace_seconds
        drained = await asyncio.gather(*(shard.close(grace) for shard in leaving))
        for shard, done in zip(leaving, drained, strict=True):
            if not done:
                log.warning("shard %s handed over with commands still in flight", shard.number)
        if self._read_sides is not None:
            await self._read_sides.stop_shards([s.number for s in leaving])

    async def set_routes(self, routes: dict[int, tuple[str, str]]) -> None:
        """The coordinator's shard -> (host id, address) table."""
        self._routes = {shard: Route(*route) for shard, route in routes.items()}
        self._routes_read = time.monotonic()

    # -- routing ---------------------------------------------------------------------

    async def process_command(
        self, entity_id: str, command: any_pb2.Any, metadata: Metadata, forwarded: bool
    ) -> EntityState:
        """Run the command on the entity's shard, here or on its owner."""

        async def remote(address: str) -> EntityState:
            request = service_pb2.ProcessCommandRequest(entity_id=entity_id, command=command)
            reply = await self._peers.process_command(
                address, request, list(metadata), self._forward_timeout()
            )
            return EntityState(reply.state, reply.meta)

        return await self._routed(
            entity_id,
            forwarded,
            lambda shard: shard.process_command(entity_id, command, metadata),
            remote,
        )

    async def get_state(self, entity_id: str, forwarded: bool) -> EntityState:
        """The entity's state, from its shard here or from its owner."""

        async def remote(address: str) -> EntityState:
            request = service_pb2.GetStateRequest(entity_id=entity_id)
            reply = await self._peers.get_state(address, request, self._forward_timeout())
            return EntityState(reply.state, reply.meta)

        return await self._routed(
            entity_id, forwarded, lambda shard: shard.get_state(entity_id), remote
        )

    async def _routed(
        self,
        entity_id: str,
        forwarded: bool,
        local: Callable[[Shard], Awaitable[T]],
        remote: Callable[[str], Awaitable[T]],
    ) -> T:
        number = shard_of(entity_id, self._settings.num_shards)
        deadline = time.monotonic() + self._settings.forward_retry_seconds
        fenced: FencedError | None = None
        while True:
            try:
                return await self._route_once(number, forwarded, local, remote)
            except FencedError as exc:
                # Another host holds the lease now; nothing was written, so the
                # command may run again on the new owner.
                self.fenced_writes += 1
                fenced = exc
                await self.release([number])
                if forwarded or time.monotonic() > deadline:
                    raise
            except (ShardNotOwnedError, OwnerMovedError) as exc:
                if forwarded or time.monotonic() > deadline:
                    raise (fenced or exc) from None
            await asyncio.sleep(_RETRY_PAUSE)
            await self._refresh_routes()

    async def _route_once(
        self,
        number: int,
        forwarded: bool,
        local: Callable[[Shard], Awaitable[T]],
        remote: Callable[[str], Awaitable[T]],
    ) -> T:
        shard = self._shards.get(number)
        if shard is not None:
            return await local(shard)
        route = self._routes.get(number)
        if forwarded or route is None or route.host_id == self.host_id:
            raise ShardNotOwnedError(f"shard {number} is not served by host {self.host_id}")
        return await remote(route.address)

    async def _refresh_routes(self) -> None:
        if self._coordinator is None or time.monotonic() - self._routes_read < _RETRY_PAUSE:
            return
        with contextlib.suppress(Exception):
            await self.set_routes(await call(self._coordinator.routes))

    def _forward_timeout(self) -> float:
        return self._settings.command_handler_timeout * 4 + 5.0

    # -- reporting and lifecycle ------------------------------------------------------

    async def shards(self) -> list[ShardInfo]:
        """The shards this host serves."""
        return [
            ShardInfo(s.number, s.epoch, s.active_entities)
            for s in sorted(self._shards.values(), key=lambda s: s.number)
        ]

    async def shard_report(self) -> list[ShardReport]:
        """The cluster's shard table, from the coordinator (for ClusterService)."""
        if self._coordinator is None:
            raise UnavailableError(f"shard host {self.host_id} has not joined a cluster yet")
        try:
            report: list[ShardReport] = await asyncio.wait_for(
                call(self._coordinator.report), _COORDINATOR_TIMEOUT
            )
        except Exception as exc:
            raise UnavailableError(f"the coordinator did not answer: {exc!r}") from exc
        return report

    async def address(self) -> str:
        """Where other hosts reach this host's gRPC server."""
        return self._advertise

    async def pid(self) -> int:
        """The process id (tests pause it to simulate a partition)."""
        return os.getpid()

    async def ping(self) -> str:
        """Liveness probe for the driver and the coordinator."""
        return self.host_id

    async def stats(self) -> dict[str, int]:
        """Counters for operators and tests."""
        return {"fenced_writes": self.fenced_writes, "shards": len(self._shards)}

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
        await self._peers.close()
        if self._handler is not None:
            await self._handler.close()
        if self._store is not None:
            await self._store.close()
        self._shards.clear()
