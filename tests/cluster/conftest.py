"""A real multi-node Ray cluster on this machine (ray.cluster_utils), per test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import ray
from ray.cluster_utils import Cluster

from chief_of_state.v1 import service_pb2_grpc
from cos.postgres import DatabaseTarget
from cos.runtime import FAST_NODE_FAILURE, Runtime, alive_nodes, start_host, start_runtime
from cos.settings import CosSettings
from cos.sharding import HTTP_PORT_LABEL, NAMESPACE, PORT_LABEL
from tests.cluster.serving import RayNode
from tests.support import ADMIN_TOKEN, cos_settings, free_port


@dataclass
class Nodes:
    """The Ray cluster of one test and the gRPC and HTTP ports of each node."""

    cluster: Cluster
    ports: dict[str, int] = field(default_factory=dict)  # node id -> port
    http_ports: dict[str, int] = field(default_factory=dict)  # node id -> COS_HTTP_PORT

    def add(self) -> dict[str, Any]:
        port, http_port = free_port(), free_port()
        node = self.cluster.add_node(
            num_cpus=1, node_ip_address="127.0.0.1", labels=_labels(port, http_port)
        )
        self.cluster.wait_for_nodes()
        self.ports[node.node_id] = port
        self.http_ports[node.node_id] = http_port
        return next(n for n in alive_nodes() if n.node_id == node.node_id)


def _labels(port: int, http_port: int) -> dict[str, str]:
    """A node's ports (gRPC, and HTTP when a test serves it), as ``cos serve`` reads them."""
    return {PORT_LABEL: str(port), HTTP_PORT_LABEL: str(http_port)}


@pytest.fixture
def ray_nodes() -> Iterator[list[RayNode]]:
    """Two ``ray start`` nodes (a head and a worker) on this machine."""
    head = RayNode(None)
    found = [head]
    try:
        found.append(RayNode(head.address))
        yield found
    finally:
        for node in reversed(found):
            node.stop()


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    if ray.is_initialized():
        ray.shutdown()  # the integration suite's local Ray; it is started again on demand
    head_port, head_http_port = free_port(), free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "node_ip_address": "127.0.0.1",
            "labels": _labels(head_port, head_http_port),
            "include_dashboard": False,
            "_system_config": FAST_NODE_FAILURE,
        },
    )
    found = Nodes(cluster)
    found.ports[cluster.head_node.node_id] = head_port
    found.http_ports[cluster.head_node.node_id] = head_http_port
    for _ in range(2):
        port, http_port = free_port(), free_port()
        node = cluster.add_node(
            num_cpus=1, node_ip_address="127.0.0.1", labels=_labels(port, http_port)
        )
        found.ports[node.node_id] = port
        found.http_ports[node.node_id] = http_port
    cluster.wait_for_nodes()
    ray.init(
        address=cluster.address,
        namespace=NAMESPACE,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    yield found
    ray.shutdown()
    cluster.shutdown()


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


@pytest.fixture
async def cluster_cos(
    nodes: Nodes, database: DatabaseTarget, write_handler: int
) -> AsyncIterator[Any]:
    started: list[ClusterRuntime] = []

    async def start(**overrides: Any) -> ClusterRuntime:
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
        settings = cos_settings(**values)
        runtime = await asyncio.to_thread(start_runtime, settings, database)
        running = ClusterRuntime(runtime, settings, database, {}, [])
        for host_id in runtime.hosts:
            running.add_stub(host_id)
        started.append(running)
        return running

    yield start
    for running in started:
        for channel in running.channels:
            await channel.close()
        with contextlib.suppress(Exception):  # a node of the test may be gone
            await asyncio.to_thread(running.runtime.stop)
