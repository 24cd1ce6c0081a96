"""The runtime assembled: settings to parts, a node's parts on one exit stack, the Ray
actors and their handles, Ray itself, the Kubernetes pods, the subscription process, and
the ``cos serve`` driver. The only package that imports Ray, and the one that builds the
PostgreSQL backend into the parts that use it.

What the CLI, the tests and the benchmarks use is named here. The names load their
modules when first used: ``prepare_ray`` must run before Ray is imported, so importing
this package imports nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.runtime._actors import RayNode, alive_nodes, lookup_actor
    from cos.runtime._deploy import (
        FAST_NODE_FAILURE,
        ClusterMismatchError,
        NodeTakenError,
        Runtime,
        coordinator_of,
        join_node,
        launch_host,
        register_host,
        shard_report,
        start_host,
        start_runtime,
    )
    from cos.runtime._driver import run
    from cos.runtime._node import Node
    from cos.runtime._plan import NodePorts
    from cos.runtime._ray import connect_ray, disconnect_ray, prepare_ray

__all__ = [
    "FAST_NODE_FAILURE",
    "ClusterMismatchError",
    "Node",
    "NodePorts",
    "NodeTakenError",
    "RayNode",
    "Runtime",
    "alive_nodes",
    "connect_ray",
    "coordinator_of",
    "disconnect_ray",
    "join_node",
    "launch_host",
    "lookup_actor",
    "prepare_ray",
    "register_host",
    "run",
    "shard_report",
    "start_host",
    "start_runtime",
]

__getattr__ = lazy_exports(__name__)
