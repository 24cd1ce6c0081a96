"""A real multi-node Ray cluster on this machine (ray.cluster_utils), per test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from cos.postgres import DatabaseTarget
from cos.runtime import FAST_NODE_FAILURE, start_runtime
from cos.sharding import NAMESPACE
from tests.support.processes import free_port
from tests.support.raynodes import RayNode
from tests.support.runtimes import ClusterRuntime, Nodes, cluster_settings, node_labels


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
            "labels": node_labels(head_port, head_http_port),
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
            num_cpus=1, node_ip_address="127.0.0.1", labels=node_labels(port, http_port)
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


@pytest.fixture
async def cluster_cos(
    nodes: Nodes, database: DatabaseTarget, write_handler: int
) -> AsyncIterator[Any]:
    started: list[ClusterRuntime] = []

    async def start(**overrides: Any) -> ClusterRuntime:
        settings = cluster_settings(write_handler, **overrides)
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
