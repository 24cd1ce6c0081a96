"""The runtime assembled: settings to parts, a node's parts on one exit stack, the Ray
actors and their handles, Ray itself, the Kubernetes pods, the subscription process, and
the ``cos serve`` driver. The only package that imports Ray, and the one that builds the
PostgreSQL backend into the parts that use it.

What the CLI, the tests and the benchmarks use is named here. The names load their
modules when first used: ``cos.runtime.ray`` must be imported before Ray is, so importing
this package imports nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cos.runtime.assembly import NodePorts
    from cos.runtime.deploy import (
        FAST_NODE_FAILURE,
        ClusterMismatchError,
        NodeTakenError,
        RayNode,
        Runtime,
        alive_nodes,
        coordinator_of,
        join_node,
        launch_host,
        lookup_actor,
        register_host,
        shard_report,
        start_host,
        start_runtime,
    )
    from cos.runtime.node import Node

__all__ = [
    "FAST_NODE_FAILURE",
    "ClusterMismatchError",
    "Node",
    "NodePorts",
    "NodeTakenError",
    "RayNode",
    "Runtime",
    "alive_nodes",
    "coordinator_of",
    "join_node",
    "launch_host",
    "lookup_actor",
    "register_host",
    "shard_report",
    "start_host",
    "start_runtime",
]
_SOURCES = ("cos.runtime.assembly", "cos.runtime.node", "cos.runtime.deploy")


def __getattr__(name: str) -> object:
    """A name of ``__all__``, from the module that defines it (imported now)."""
    if name in __all__:
        for source in _SOURCES:
            module = importlib.import_module(source)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
