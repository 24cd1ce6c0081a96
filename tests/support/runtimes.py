"""Runtimes the tests start in their own process (``start_runtime``): on one local Ray, or
spread over a multi-node Ray cluster on this machine."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import ray
from ray.cluster_utils import Cluster

from chief_of_state.v1 import service_pb2_grpc
from cos.postgres import DatabaseTarget
from cos.runtime import Runtime, alive_nodes, start_host
from cos.settings import CosSettings
from cos.sharding import HTTP_PORT_LABEL, PORT_LABEL
from tests.support.processes import free_port
from tests.support.serve import ADMIN_TOKEN, cos_settings


def runtime_settings(write_handler: int, **overrides: Any) -> CosSettings:
    """Settings of a test's runtime: on loopback, a free port, a cluster name of its own."""
    values: dict[str, Any] = {
        "write_side_host": "127.0.0.1",
        "write_side_port": write_handler,
        "address": "127.0.0.1",
        "port": free_port(),
        "command_handler_timeout": 5.0,
        "advertise_address": "127.0.0.1",
        "cluster_name": f"t{uuid.uuid4().hex[:10]}",
        "admin_token": ADMIN_TOKEN,
    }
    values.update(overrides)
    return cos_settings(**values)


def cluster_settings(write_handler: int, **overrides: Any) -> CosSettings:
    """Settings of a runtime spread over a test's Ray cluster: 16 shards, a node taken for
    lost after 3 s."""
    values: dict[str, Any] = {
        "write_side_host": "127.0.0.1",
        "write_side_port": write_handler,
        "address": "127.0.0.1",
        "advertise_address": "127.0.0.1",
        "cluster_name": f"c{uuid.uuid4().hex[:10]}",
        "num_shards": 16,
        "host_failure_timeout_seconds": 3.0,
        "admin_token": ADMIN_TOKEN,
    }
    values.update(overrides)
    return cos_settings(**values)


@dataclass
class RunningRuntime:
    """A runtime started for a test, with a client stub on its gRPC port."""

    runtime: Runtime
    settings: CosSettings
    channel: grpc.aio.Channel
    stub: service_pb2_grpc.ChiefOfStateServiceStub


StartRuntime = Callable[..., Awaitable[RunningRuntime]]


def node_labels(port: int, http_port: int) -> dict[str, str]:
    """A node's ports (gRPC, and HTTP when a test serves it), as ``cos serve`` reads them."""
    return {PORT_LABEL: str(port), HTTP_PORT_LABEL: str(http_port)}


@dataclass
class Nodes:
    """The Ray cluster of one test and the gRPC and HTTP ports of each node."""

    cluster: Cluster
    ports: dict[str, int] = field(default_factory=dict)  # node id -> port
    http_ports: dict[str, int] = field(default_factory=dict)  # node id -> COS_HTTP_PORT

    def add(self) -> dict[str, Any]:
        port, http_port = free_port(), free_port()
        node = self.cluster.add_node(
            num_cpus=1, node_ip_address="127.0.0.1", labels=node_labels(port, http_port)
        )
        self.cluster.wait_for_nodes()
        self.ports[node.node_id] = port
        self.http_ports[node.node_id] = http_port
        return next(n for n in alive_nodes() if n.node_id == node.node_id)


@dataclass
class ClusterRuntime:
    """A runtime spread over the nodes, with a client per node port."""

    runtime: Runtime
    settings: CosSettings
    target: DatabaseTarget
    stubs: dict[str, service_pb2_grpc.ChiefOfStateServiceStub]  # host id -> stub
    channels: list[grpc.aio.Channel]

    def add_stub(self, host_id: str) -> None:
        channel = grpc.aio.insecure_channel(self.runtime.addresses[host_id])
        self.channels.append(channel)
        self.stubs[host_id] = service_pb2_grpc.ChiefOfStateServiceStub(channel)

    async def table(self) -> list[Any]:
        # The coordinator may be restarting (its node died): Ray retries the call.
        for _ in range(60):
            try:
                return await asyncio.to_thread(
                    ray.get, self.runtime.coordinator.table.remote(), timeout=30
                )
            except ray.exceptions.ActorUnavailableError:
                await asyncio.sleep(0.5)
        raise AssertionError("the coordinator did not come back")

    async def join(self, node: dict[str, Any]) -> str:
        host_id = await asyncio.to_thread(
            start_host, self.runtime, self.settings, self.target, node
        )
        self.add_stub(host_id)
        return host_id
