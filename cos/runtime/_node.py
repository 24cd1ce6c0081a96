"""A node of the runtime: what ``cos.runtime._deploy`` runs as the Ray actor of a node.

It assembles its parts inside the actor's event loop (``cos.runtime.assembly``), serves
until stopped, and passes the coordinator's calls (:class:`cos.sharding.handles.HostHandle`)
to its shard host.

    gRPC ──> servicers ──┐
    HTTP ──> cos.http ───┴──> interceptors ──> ShardHost ──> Shard ──> write handler
                                               │            └──> GroupCommitWriter ──> journal
                                               └──> PeerClients (the owner's gRPC port)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import ray
from ray import ObjectRef
from ray.actor import ActorHandle

from cos.background import Background
from cos.logs import configure_logging, share_stderr
from cos.postgres import DatabaseTarget
from cos.runtime._plan import SERVICES, NodePlan, NodePorts
from cos.runtime._ray import die_with_raylet
from cos.service import NodeHealth
from cos.settings import CosSettings
from cos.sharding import (
    NAMESPACE,
    Coordinator,
    CoordinatorHandle,
    Routes,
    ShardHost,
    ShardInfo,
    coordinator_name,
)
from cos.writeside import Interceptor

log = logging.getLogger("cos.node")
serve_log = logging.getLogger("cos.serve")  # what cos serve says, said for it (leave)

_LIFELINE_CHECK = 0.1  # seconds between checks that the raylet and the driver live
_DEREGISTER_TIMEOUT = 120.0  # the coordinator moves this node's shards to the others


@dataclass(frozen=True)
class Driver:
    """The ``cos serve`` a node serves for, on the node's machine: the node writes to its
    stderr and stops when it ends. With ``control``, the node also answers it on that Unix
    socket (``cos.runtime.watcher``: ``ping``, ``leave``)."""

    pid: int
    control: str | None = None


class Node:
    """One node: its shard host, read sides and servers."""

    def __init__(
        self,
        settings: CosSettings,
        target: DatabaseTarget,
        host_id: str,
        *,
        ports: NodePorts,
        advertise: str,
        interceptors: Sequence[Interceptor] = (),
        driver: Driver | None = None,
    ) -> None:
        die_with_raylet()
        self.host_id = host_id
        self._plan = NodePlan(settings, target, host_id, ports, advertise, tuple(interceptors))
        self._health = NodeHealth(SERVICES)
        self._stack: AsyncExitStack | None = None
        self._shard_host: ShardHost | None = None
        self._driver = driver

    async def start(self) -> str:
        """Start every part and serve; returns the gRPC server's address. Raises a
        ``StartupError`` (``PortInUseError`` for a taken port) after undoing what was
        started."""
        settings = self._plan.settings
        if self._driver is not None:
            share_stderr(self._driver.pid)  # its lines go where cos serve's go
        configure_logging(settings.logging)
        from cos.runtime._assembly import assemble  # what a node runs, loaded where it runs

        stack = AsyncExitStack()
        try:
            parts = await assemble(stack, self._plan, self._health)
            watchdog = Background()
            watchdog.start(self._watch_lifelines(parts.server))
            stack.push_async_callback(watchdog.stop)
            if self._driver is not None and self._driver.control is not None:
                control = await asyncio.start_unix_server(self._answer, self._driver.control)
                stack.callback(control.close)  # not wait_closed: leave answers from within
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._shard_host = stack, parts.host
        return f"{settings.server.address}:{self._plan.ports.grpc}"

    async def stop(self) -> None:
        """Health ``NOT_SERVING``, stop taking calls, let those in flight finish, then
        release everything, in the reverse order it was started."""
        stack, self._stack = self._stack, None
        if stack is None:
            await self._health.stopping()
            return
        await stack.aclose()

    async def _watch_lifelines(self, server: grpc.aio.Server) -> None:
        """Stop serving at once when this node's raylet or its ``cos serve`` is gone.

        Left alone, the actor's process outlives a killed raylet by seconds and goes on
        acknowledging commands, and a detached actor outlives its driver for good. The
        raylet is this process's parent; the driver runs on the same machine.
        """
        parent = os.getppid()
        while True:
            await asyncio.sleep(_LIFELINE_CHECK)
            if os.getppid() != parent:
                gone = "its Ray node (the raylet) is gone"
            elif self._driver is not None and not _running(self._driver.pid):
                gone = f"its cos serve (pid {self._driver.pid}) is gone"
            else:
                continue
            log.error("shard host %s: %s; it stops serving now", self.host_id, gone)
            await server.stop(0)
            os._exit(1)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer ``cos serve`` become its watcher: ``ping`` is answered ``alive`` (from this
        event loop: a node that is stuck does not answer); ``leave`` hands the shards over,
        stops the node, answers ``left`` and ends this process."""
        while line := await reader.readline():
            if line.strip() == b"leave":
                try:
                    await self.leave()
                except Exception:
                    serve_log.exception("stopping %s failed", self.host_id)
                writer.write(b"left\n")
                await writer.drain()
                os._exit(0)  # as cos serve would have killed the actor
            writer.write(b"alive\n")
            await writer.drain()

    async def leave(self) -> None:
        """Hand this node's shards over and stop: what ``cos serve`` does on SIGTERM (said
        in its name: its lines, ``cos.serve``, are this node's once it is the watcher)."""
        serve_log.info("shutting down: handing shards over, draining in-flight commands")
        await self._health.stopping()
        settings = self._plan.settings
        try:
            name = coordinator_name(settings.cluster.cluster_name)
            coordinator: ActorHandle[Coordinator] = ray.get_actor(name, namespace=NAMESPACE)
            deregistered: ObjectRef[None] = coordinator.deregister_host.remote(self.host_id)
            await asyncio.wait_for(deregistered, _DEREGISTER_TIMEOUT)
        except Exception as exc:
            serve_log.error("graceful hand-over of %s failed: %s", self.host_id, exc)
        await self.stop()
        serve_log.info("cos serve stopped")

    @property
    def _host(self) -> ShardHost:
        if self._shard_host is None or self._stack is None:
            raise RuntimeError(f"node {self.host_id} is not started")
        return self._shard_host

    # -- the coordinator's HostHandle, passed on to the host ------------------------

    async def attach(self, coordinator: CoordinatorHandle) -> None:
        """Remember the coordinator."""
        await self._host.attach(coordinator)

    async def assign(self, shards: Sequence[int]) -> dict[int, int]:
        """Serve ``shards`` (taking their leases); returns each one's epoch."""
        return await self._host.assign(shards)

    async def release(self, shards: Sequence[int]) -> None:
        """Hand ``shards`` over once their in-flight commands are done."""
        await self._host.release(shards)

    async def set_routes(self, routes: Routes) -> None:
        """The whole route table (the coordinator sends it once the shards are placed)."""
        await self._host.set_routes(routes)
        await self._health.serving()

    async def shutting_down(self) -> None:
        """Health ``NOT_SERVING`` from now on: the node hands its shards over, then stops."""
        await self._health.stopping()

    async def shards(self) -> list[ShardInfo]:
        """The shards this node serves."""
        return await self._host.shards()

    async def address(self) -> str:
        """Where other nodes reach this node's gRPC server."""
        return self._plan.advertise

    async def ping(self) -> str:
        """Liveness probe for the driver and the coordinator."""
        return self.host_id

    # -- for operators and tests -----------------------------------------------------

    async def pid(self) -> int:
        """The process id (tests pause it to simulate a partition)."""
        return os.getpid()

    async def stats(self) -> dict[str, int]:
        """Counters: fenced writes, shards served."""
        host = self._host
        return {"fenced_writes": host.fenced_writes, "shards": len(await host.shards())}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True
