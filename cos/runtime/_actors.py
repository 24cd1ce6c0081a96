"""The runtime's classes made Ray actors, and the typed handles they call each other by.

Each node runs one ``Node`` actor (``cos.runtime._node``); the cluster runs one
``Coordinator`` (``CoordinatorProcess``). Both are plain classes made remote here, in one
place; ``cos.runtime._deploy`` starts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle

from cos.logs import LogSettings, NodeStderr, configure_logging
from cos.runtime._node import Node
from cos.runtime._ray import die_with_raylet
from cos.sharding import (
    NAMESPACE,
    Coordinator,
    CoordinatorHandle,
    Routes,
    ShardInfo,
    ShardReport,
)


class CoordinatorProcess(Coordinator):
    """The coordinator as its actor runs it: logging as every process of the runtime, where
    the ``cos serve`` of the node it runs on logs (no log monitor forwards its lines)."""

    def __init__(
        self, num_shards: int, *, logging: LogSettings, cluster: str, **given: Any
    ) -> None:
        die_with_raylet()
        node = ray.get_runtime_context().get_node_id()
        configure_logging(logging, NodeStderr(stderr_note(node, cluster)))
        super().__init__(num_shards, cluster=cluster, **given)


def stderr_note(node: str, cluster: str) -> str:
    """The name under which the ``cos serve`` of runtime ``cluster`` on Ray node ``node``
    notes its stderr for the runtime's other processes there (``cos.logs.note_stderr``)."""
    return f"{cluster}.{node}"


# Hosts and the coordinator take no CPU slot: they are I/O bound and must always be
# schedulable next to user work.
NodeActor = ray.remote(num_cpus=0, max_restarts=0)(Node)
CoordinatorActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)(CoordinatorProcess)


class RayHost:
    """A node's actor, as the coordinator calls it (:class:`HostHandle`)."""

    def __init__(self, handle: ActorHandle[Node]) -> None:
        self._handle = handle

    async def attach(self, coordinator: CoordinatorHandle) -> None:
        await self._handle.attach.remote(coordinator)

    async def assign(self, shards: Sequence[int]) -> dict[int, int]:
        epochs: dict[int, int] = await self._handle.assign.remote(shards)
        return epochs

    async def release(self, shards: Sequence[int]) -> None:
        await self._handle.release.remote(shards)

    async def set_routes(self, routes: Routes) -> None:
        await self._handle.set_routes.remote(routes)

    async def ping(self) -> str:
        return str(await self._handle.ping.remote())

    async def address(self) -> str:
        return str(await self._handle.address.remote())

    async def shards(self) -> list[ShardInfo]:
        infos: list[ShardInfo] = await self._handle.shards.remote()
        return infos


class RayCoordinator:
    """The coordinator's actor, as a host calls it (:class:`CoordinatorHandle`)."""

    def __init__(self, handle: ActorHandle[Coordinator]) -> None:
        self._handle = handle

    async def routes(self) -> dict[int, tuple[str, str]]:
        routes: dict[int, tuple[str, str]] = await self._handle.routes.remote()
        return routes

    async def report(self) -> list[ShardReport]:
        rows: list[ShardReport] = await self._handle.report.remote()
        return rows


# ActorHandle[Any]: a handle found by name can be of any of the runtime's actor classes.
def lookup_actor(name: str) -> ActorHandle[Any]:
    """A named actor of the runtime's namespace (raises ValueError when there is none)."""
    handle: ActorHandle[Any] = ray.get_actor(name, namespace=NAMESPACE)
    return handle


def find_host(name: str) -> RayHost:
    """A host by its actor name (the coordinator's ``find_host``)."""
    return RayHost(lookup_actor(name))


def find_coordinator(name: str) -> RayCoordinator:
    """The coordinator by its actor name (its own ``find_self``)."""
    return RayCoordinator(lookup_actor(name))


@dataclass(frozen=True)
class RayNode:
    """What the runtime needs of a Ray node."""

    node_id: str
    ip: str
    labels: Mapping[str, str]

    @classmethod
    def parse(cls, info: Mapping[str, Any]) -> RayNode:
        """From an entry of ``ray.nodes()`` (Ray types it as ``dict[str, Any]``)."""
        return cls(str(info["NodeID"]), str(info["NodeManagerAddress"]), info.get("Labels", {}))


def alive_nodes() -> list[RayNode]:
    """The Ray nodes that are alive."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [RayNode.parse(node) for node in nodes if node.get("Alive")]
