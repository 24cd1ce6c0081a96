"""ShardHost: the shards one node serves, and the routing of every command to its shard.

A command for a shard this host owns runs in this process: one dict lookup, no Ray actor
boundary, no closure. One for another host's shard is forwarded to its owner over gRPC,
and retried while the shard moves. The coordinator assigns and releases shards and
pushes the route table. ``cos.runtime`` builds a host and everything around it.

Hand-over lives here: :meth:`ShardHost.release` refuses new commands of a leaving shard
and lets those in flight finish before its read sides stop and another host takes the
lease; a write fenced by a newer epoch gives the shard up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cos.errors import (
    FencedError,
    HostUnreachableError,
    NotWrittenError,
    ShardNotOwnedError,
    UnavailableError,
)
from cos.sharding._handles import CoordinatorHandle, Routes
from cos.sharding._report import ShardInfo, ShardReport
from cos.sharding._routing import shard_of
from cos.sharding._settings import ClusterSettings
from cos.storage import LeaseStore
from cos.writeside import CommandRequest, EntityState, Shard, StateRequest

log = logging.getLogger(__name__)

_RETRY_PAUSE = 0.05
_COORDINATOR_TIMEOUT = 30.0
_ROUTES_TIMEOUT = 1.0
Request = CommandRequest | StateRequest
NewShard = Callable[[int, int], Shard]  # (shard, epoch) -> the shard, served here


class Peers(Protocol):
    """The other hosts, reached over gRPC (``cos.sharding.forward.PeerClients``)."""

    async def forward_command(
        self, route: Route, request: CommandRequest, timeout: float
    ) -> EntityState: ...

    async def forward_state(
        self, route: Route, request: StateRequest, timeout: float
    ) -> EntityState: ...


class ShardEvents(Protocol):
    """Told when shards start and stop here (the read sides run with their shards)."""

    async def shards_started(self, shards: Sequence[Shard]) -> None: ...

    async def shards_stopped(self, shards: Sequence[int]) -> None: ...


@dataclass(frozen=True)
class Route:
    """Where a shard is served."""

    host_id: str
    address: str


class ShardHost:
    """Owns shards and routes ``CommandRequest``/``StateRequest`` to them
    (a :class:`cos.writeside.commands.CommandHandler`)."""

    def __init__(
        self,
        *,
        host_id: str,
        new_shard: NewShard,
        leases: LeaseStore,
        peers: Peers,
        cluster: ClusterSettings,
        events: Sequence[ShardEvents] = (),
        grace: float = 10.0,
        command_timeout: float = 5.0,
    ) -> None:
        self.host_id = host_id
        self._new_shard = new_shard
        self._leases = leases
        self._peers = peers
        self._events = tuple(events)
        self._num_shards = cluster.num_shards
        self._forward_retry = cluster.forward_retry_seconds
        self._grace = grace  # COS_SHUTDOWN_GRACE_SECONDS: in-flight commands of a leaving shard
        self._command_timeout = command_timeout  # COS_COMMAND_HANDLER_TIMEOUT
        self._shards: dict[int, Shard] = {}
        self._routes: dict[int, Route] = {}
        self._coordinator: CoordinatorHandle | None = None
        self._routes_read = 0.0
        self.fenced_writes = 0
        # Set by the LeaseKeeper while the coordinator does not answer.
        self.coordinator_silent = False

    # -- ownership (called by the coordinator) ---------------------------------------

    async def attach(self, coordinator: CoordinatorHandle) -> None:
        """Remember the coordinator, to ask it for routes when a shard has moved."""
        self._coordinator = coordinator

    async def assign(self, shards: Sequence[int]) -> dict[int, int]:
        """Take the leases of ``shards`` (a higher epoch each) and start serving them."""
        new = [s for s in shards if s not in self._shards]
        epochs = await self._leases.acquire_shards(new, self.host_id) if new else {}
        await self._serve(epochs)
        return {s: self._shards[s].epoch for s in shards}

    async def take_over(self, expected: Mapping[int, int]) -> list[int]:
        """Take the leases of a lost host's shards, each only if it still has the epoch
        read (no one took it since), and serve them; returns the shards taken."""
        wanted = {s: epoch for s, epoch in expected.items() if s not in self._shards}
        epochs = await self._leases.take_over(wanted, self.host_id) if wanted else {}
        await self._serve(epochs)
        return sorted(epochs)

    async def _serve(self, epochs: Mapping[int, int]) -> None:
        started = []
        for number, epoch in epochs.items():
            shard = self._shards[number] = self._new_shard(number, epoch)
            started.append(shard)
        for events in self._events if started else ():
            await events.shards_started(started)

    async def release(self, shards: Sequence[int]) -> None:
        """Hand shards over: refuse new commands, let in-flight ones finish, stop runners."""
        leaving = [self._shards.pop(s) for s in shards if s in self._shards]
        drained = await asyncio.gather(*(shard.close(self._grace) for shard in leaving))
        for shard, done in zip(leaving, drained, strict=True):
            if not done:
                log.warning("shard %s handed over with commands still in flight", shard.number)
        for events in self._events if leaving else ():
            await events.shards_stopped([s.number for s in leaving])

    def owner_of(self, shard: int) -> str | None:
        """The host serving ``shard`` as this host knows it (itself, or the route's)."""
        if shard in self._shards:
            return self.host_id
        route = self._routes.get(shard)
        return None if route is None else route.host_id

    @property
    def active_entities(self) -> int:
        """Entities held in memory over every shard of this host."""
        # Read from the metrics thread too: copy the values first (one step under the GIL).
        return sum(shard.active_entities for shard in list(self._shards.values()))

    @property
    def shard_count(self) -> int:
        """How many shards this host serves."""
        return len(self._shards)

    @property
    def coordinator(self) -> CoordinatorHandle | None:
        """The coordinator this host was attached to (None before it registered)."""
        return self._coordinator

    async def set_routes(self, routes: Routes) -> None:
        """The coordinator's shard -> (host id, address) table."""
        self._routes = {shard: Route(*route) for shard, route in routes.items()}
        self._routes_read = time.monotonic()

    # -- routing (a CommandHandler) --------------------------------------------------

    async def process_command(self, request: CommandRequest) -> EntityState:
        """Run the command on the entity's shard, here or on its owner."""
        return await self._route(request)

    async def get_state(self, request: StateRequest) -> EntityState:
        """The entity's state, from its shard here or from its owner."""
        return await self._route(request)

    async def _route(self, request: Request) -> EntityState:
        number = shard_of(request.entity_id, self._num_shards)
        give_up: float | None = None
        fenced: FencedError | None = None
        while True:
            try:
                return await self._attempt(number, request)
            except (ShardNotOwnedError, HostUnreachableError, FencedError, NotWrittenError) as exc:
                # Nothing of the command was written: it may be tried again, on the new
                # owner, or here on the entity's durable state (NotWrittenError).
                if isinstance(exc, FencedError):
                    self.fenced_writes += 1
                    fenced = exc
                    await self.release([number])
                give_up = give_up or self._retry_until(request)
                if request.forwarded or time.monotonic() > give_up:
                    raise (fenced or exc) from None
                if isinstance(exc, NotWrittenError):
                    continue  # its shard is still here: at once, behind the failed write
            await asyncio.sleep(_RETRY_PAUSE)
            await self._refresh_routes()

    async def _attempt(self, number: int, request: Request) -> EntityState:
        shard = self._shards.get(number)
        if shard is not None:
            if isinstance(request, CommandRequest):
                return await shard.run(request)
            return await shard.state_of(request.entity_id)
        route = self._routes.get(number)
        if request.forwarded or route is None or route.host_id == self.host_id:
            raise ShardNotOwnedError(f"shard {number} is not served by host {self.host_id}")
        timeout = self._hop_timeout(request.deadline)
        if isinstance(request, CommandRequest):
            return await self._peers.forward_command(route, request, timeout)
        return await self._peers.forward_state(route, request, timeout)

    def _retry_until(self, request: Request) -> float:
        # While a shard moves (a hand-over, or a lost node's failover) the command is
        # retried until the new owner answers, within the caller's own deadline.
        give_up = time.monotonic() + self._forward_retry
        if request.deadline is not None:
            give_up = min(give_up, request.deadline - _RETRY_PAUSE)
        return give_up

    async def _refresh_routes(self) -> None:
        if self._coordinator is None or time.monotonic() - self._routes_read < _RETRY_PAUSE:
            return
        if self.coordinator_silent:
            return  # routes come from the leases (cos.sharding.keeper) until it answers
        with contextlib.suppress(Exception):  # the coordinator may be moving too
            # Bounded: a coordinator lost with Ray's head may never answer.
            routes = await asyncio.wait_for(self._coordinator.routes(), _ROUTES_TIMEOUT)
            await self.set_routes(routes)

    def _hop_timeout(self, deadline: float | None) -> float:
        # The owner may queue the command behind others of its entity, then run its
        # handler calls; the caller's deadline, when it set one, caps it all.
        longest = self._command_timeout * 4 + 5.0
        if deadline is None:
            return longest
        return max(0.01, min(longest, deadline - time.monotonic()))

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
            return await asyncio.wait_for(self._coordinator.report(), _COORDINATOR_TIMEOUT)
        except Exception as exc:
            raise UnavailableError(f"the coordinator did not answer: {exc!r}") from exc

    def served(self) -> list[Shard]:
        """The shards served here now."""
        return list(self._shards.values())

    async def close(self) -> None:
        """Forget the shards (the node has stopped taking calls)."""
        self._shards.clear()
