"""gRPC health checking (``grpc.health.v1.Health``) and server reflection on the node's port.

Health is ``NOT_SERVING`` from the start of the server until the coordinator has given this
node its shards and the route table (before that a command could find no route), and again
from the moment the node starts shutting down (a hand-over, SIGTERM), so that load balancers
and Kubernetes probes stop sending it calls before it goes. The overall status (service
``""``) and each service's answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class NodeHealth:
    """The node's health status, served with reflection on its gRPC server."""

    def __init__(self, services: Sequence[str]) -> None:
        self._services = ("", *services)
        self._servicer = health.aio.HealthServicer()
        self._serving = False
        self._stopping = False

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve health and reflection (which lists every service, these two included)."""
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        names = [*self._services[1:], health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)

    async def starting(self) -> None:
        """``NOT_SERVING`` until :meth:`serving`."""
        for service in self._services:
            await self._servicer.set(service, _NOT_SERVING)

    async def serving(self) -> None:
        """The node has its shards and routes: ``SERVING`` (unless it is stopping)."""
        if self._serving or self._stopping:
            return
        self._serving = True
        for service in self._services:
            await self._servicer.set(service, _SERVING)

    async def stopping(self) -> None:
        """``NOT_SERVING`` for good: the node is handing over or shutting down."""
        if not self._stopping:
            self._stopping = True
            await self._servicer.enter_graceful_shutdown()
