"""Turns ShardHost and Coordinator into Ray actors and starts a runtime on a cluster."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cos.journal.database import DatabaseTarget
from cos.settings import CosSettings
from cos.sharding.coordinator import Coordinator
from cos.sharding.host import ShardHost

NAMESPACE = "cos"

# Hosts and the coordinator take no CPU slot: they are I/O bound and must
# always be schedulable next to user work.
ShardHostActor = ray.remote(num_cpus=0, max_restarts=0)(ShardHost)
CoordinatorActor = ray.remote(num_cpus=0, max_restarts=-1)(Coordinator)


@dataclass
class Runtime:
    """Handles of a running deployment."""

    name: str
    coordinator: Any
    hosts: dict[str, Any] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """Drain every host, then remove the actors."""
        ray.get([host.stop.remote() for host in self.hosts.values()], timeout=60)
        for actor in [*self.hosts.values(), self.coordinator]:
            ray.kill(actor)
        self.hosts.clear()


def start_runtime(settings: CosSettings, target: DatabaseTarget, name: str = "") -> Runtime:
    """Create the coordinator and one shard host per alive Ray node, and assign shards.

    ``name`` keeps the actors of several runtimes on one cluster apart (tests);
    a fresh one is made when empty.
    """
    name = name or f"cos-{uuid.uuid4().hex[:8]}"
    coordinator = CoordinatorActor.options(
        name=f"{name}-coordinator", namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings.num_shards)
    runtime = Runtime(name, coordinator)
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    try:
        for node in nodes:
            if node.get("Alive"):
                _start_host(runtime, settings, target, node["NodeID"])
    except BaseException:
        runtime.stop()
        raise
    return runtime


def _start_host(runtime: Runtime, settings: CosSettings, target: DatabaseTarget, node: str) -> None:
    host_id = f"{runtime.name}-host-{node[:12]}"
    host: Any = ShardHostActor.options(
        name=host_id,
        namespace=NAMESPACE,
        lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(settings, target, host_id)
    runtime.hosts[host_id] = host
    runtime.addresses[host_id] = ray.get(host.start.remote())
    ray.get(runtime.coordinator.register_host.remote(host_id, host))
