"""What the actors of a runtime call on each other, typed.

The coordinator calls hosts through :class:`HostHandle` and hosts call the coordinator
through :class:`CoordinatorHandle`. In a cluster these are Ray actor handles wrapped by
``cos.deploy`` (``RayHost``, ``RayCoordinator``); in unit tests, plain objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from cos.sharding._report import ShardInfo, ShardReport

# shard -> (host id, address of its gRPC port)
Routes = Mapping[int, tuple[str, str]]


class CoordinatorHandle(Protocol):
    """The coordinator, as a host calls it."""

    async def routes(self) -> dict[int, tuple[str, str]]:
        """shard -> (host id, address) of every owned shard."""
        ...

    async def report(self) -> list[ShardReport]:
        """The shard table with each owner's address and entities in memory."""
        ...


class HostHandle(Protocol):
    """A node's shard host, as the coordinator calls it."""

    async def attach(self, coordinator: CoordinatorHandle) -> None:
        """Remember the coordinator, to ask it for routes when a shard has moved."""
        ...

    async def assign(self, shards: Sequence[int]) -> dict[int, int]:
        """Take the leases of ``shards`` and serve them; returns each one's epoch."""
        ...

    async def release(self, shards: Sequence[int]) -> None:
        """Stop serving ``shards`` once their in-flight commands are done."""
        ...

    async def set_routes(self, routes: Routes) -> None:
        """The whole route table."""
        ...

    async def ping(self) -> str:
        """Liveness: the host id."""
        ...

    async def address(self) -> str:
        """Where other hosts reach its gRPC port."""
        ...

    async def shards(self) -> list[ShardInfo]:
        """The shards it serves."""
        ...
