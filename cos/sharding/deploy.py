"""Turns ShardHost and Coordinator into Ray actors and starts hosts on nodes.

Each node runs one ShardHost. ``cos serve`` starts the host of its own node
(`join_node`); tests start hosts on every node of a cluster (`start_runtime`).
Either way the host registers with the cluster's one coordinator.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import ActorAlreadyExistsError, ActorDiedError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cos.journal.database import DatabaseTarget
from cos.settings import CosSettings
from cos.sharding.coordinator import Coordinator, layout_of
from cos.sharding.host import ShardHost

log = logging.getLogger(__name__)

NAMESPACE = "cos"
# A node label naming the gRPC port of that node's host (several nodes on one machine).
PORT_LABEL = "cos-port"

# Hosts and the coordinator take no CPU slot: they are I/O bound and must
# always be schedulable next to user work.
ShardHostActor = ray.remote(num_cpus=0, max_restarts=0)(ShardHost)
CoordinatorActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)(Coordinator)


# Ray declares a node dead after health_check_failure_threshold missed checks
# (default 5 x 3 s). The coordinator may live on that node, so a lost node is
# only handed over after Ray notices: clusters we start notice within ~6 s.
# Fewer misses make a busy but healthy node look dead (seen on 2 loaded cores).
FAST_NODE_FAILURE = {"health_check_period_ms": 1000, "health_check_failure_threshold": 6}


class NodeTakenError(RuntimeError):
    """A shard host of this runtime already serves the node (one host per node)."""


class ClusterMismatchError(RuntimeError):
    """The runtime of that name on the cluster runs with other shards or journal."""


def lookup_actor(name: str) -> Any:
    """A named actor of the runtime's namespace."""
    return ray.get_actor(name, namespace=NAMESPACE)


@dataclass
class Runtime:
    """Handles of the actors this process started."""

    name: str
    coordinator: Any
    hosts: dict[str, Any] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def leave(self, host_id: str) -> None:
        """Hand the host's shards to the other hosts, then stop it."""
        self.hand_over(host_id)
        self.stop_host(host_id)

    def hand_over(self, host_id: str) -> None:
        """Deregister the host: the coordinator moves its shards to the others first."""
        ray.get(self.coordinator.deregister_host.remote(host_id), timeout=120)

    def stop_host(self, host_id: str) -> None:
        """Stop a host (after ``hand_over``): in-flight commands finish, then it exits."""
        host = self.hosts.pop(host_id)
        self.addresses.pop(host_id, None)
        ray.get(host.stop.remote(), timeout=60)
        ray.kill(host)

    def forget(self, host_id: str) -> None:
        """Drop the handle of a host whose node died."""
        self.hosts.pop(host_id, None)
        self.addresses.pop(host_id, None)

    def stop(self) -> None:
        """Stop every host of this runtime and the coordinator (no hand-over).

        A host that is gone (its node died) does not keep the others alive.
        """
        hosts = list(self.hosts.values())
        stopping = [host.stop.remote() for host in hosts]
        for ref in stopping:
            with contextlib.suppress(RayError, TimeoutError):
                ray.get(ref, timeout=60)
        for actor in [*hosts, self.coordinator]:
            with contextlib.suppress(RayError, ValueError):
                ray.kill(actor)
        self.hosts.clear()
        self.addresses.clear()


def coordinator_of(settings: CosSettings, target: DatabaseTarget) -> Any:
    """The cluster's coordinator, created when it does not exist yet.

    A coordinator left idle by an earlier run with other settings (every host
    gone) is replaced; one that still has hosts is a configuration error.
    """
    name = f"{settings.cluster_name}-coordinator"
    wanted = layout_of(settings.num_shards, target)
    for _ in range(100):
        handle: Any = CoordinatorActor.options(
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(
            settings.num_shards, target, lookup_actor, settings.host_failure_timeout_seconds, name
        )
        try:
            found = ray.get(handle.layout.remote(), timeout=60)
        except ActorDiedError:
            time.sleep(0.1)  # the idle one being replaced; its name is not free yet
            continue
        if found == wanted:
            ray.get(handle.start.remote())
            return handle
        if ray.get(handle.hosts.remote(), timeout=60):
            raise ClusterMismatchError(
                f"runtime {settings.cluster_name!r} on this Ray cluster runs with {found};"
                f" this node has {wanted}: give every node the same settings, or another"
                " COS_CLUSTER_NAME"
            )
        log.warning("replacing the idle coordinator %s (it ran with %s)", name, found)
        ray.kill(handle, no_restart=True)
        time.sleep(0.1)
    raise ClusterMismatchError(f"could not replace the idle coordinator {name}")


def start_host(
    runtime: Runtime, settings: CosSettings, target: DatabaseTarget, node: dict[str, Any]
) -> str:
    """Start the host of ``node``, register it, and return its id."""
    host_id = launch_host(runtime, settings, target, node)
    register_host(runtime, host_id)
    return host_id


def launch_host(
    runtime: Runtime, settings: CosSettings, target: DatabaseTarget, node: dict[str, Any]
) -> str:
    """Create the host actor of ``node`` and start its gRPC server (it owns no shard yet)."""
    port = int(node.get("Labels", {}).get(PORT_LABEL, settings.port))
    advertise = f"{settings.advertise_address or node['NodeManagerAddress']}:{port}"
    host_id = f"{runtime.name}-host-{node['NodeID'][:12]}"
    try:
        host: Any = ShardHostActor.options(
            name=host_id,
            namespace=NAMESPACE,
            lifetime="detached",
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote(settings, target, host_id, port, advertise)
    except ActorAlreadyExistsError:
        raise NodeTakenError(
            f"{host_id} already serves Ray node {node['NodeID'][:12]}: run one cos serve per"
            " node (on a machine with several nodes, COS_RAY_TEMP_DIR picks the node;"
            " runtimes sharing a cluster need different COS_CLUSTER_NAMEs)"
        ) from None
    runtime.hosts[host_id] = host
    ray.get(host.start.remote())
    runtime.addresses[host_id] = advertise
    return host_id


def register_host(runtime: Runtime, host_id: str) -> list[int]:
    """Register a launched host: the coordinator hands it its share; returns those shards."""
    host, address = runtime.hosts[host_id], runtime.addresses[host_id]
    shards: list[int] = ray.get(runtime.coordinator.register_host.remote(host_id, host, address))
    return shards


def alive_nodes() -> list[dict[str, Any]]:
    """The Ray nodes that are alive."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [node for node in nodes if node.get("Alive")]


def start_runtime(
    settings: CosSettings, target: DatabaseTarget, nodes: list[dict[str, Any]] | None = None
) -> Runtime:
    """The coordinator and one host per node (default: every alive node)."""
    runtime = Runtime(settings.cluster_name, coordinator_of(settings, target))
    try:
        for node in alive_nodes() if nodes is None else nodes:
            start_host(runtime, settings, target, node)
    except BaseException:
        runtime.stop()
        raise
    return runtime


def join_node(settings: CosSettings, target: DatabaseTarget) -> Runtime:
    """What ``cos serve`` does: start and register the host of the node it runs on."""
    here = ray.get_runtime_context().get_node_id()
    node = next(n for n in alive_nodes() if n["NodeID"] == here)
    runtime = Runtime(settings.cluster_name, coordinator_of(settings, target))
    start_host(runtime, settings, target, node)
    return runtime
