"""The start of a node's host and of the cluster's coordinator, on Ray (the actors and
their handles are ``cos.runtime._actors``).

``cos serve`` starts the host of its own node (:func:`join_node`); tests start hosts on
every node (:func:`start_runtime`). Either way the host registers with the cluster's
coordinator.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, cast

import ray
from ray import ObjectRef
from ray.actor import ActorHandle
from ray.exceptions import ActorAlreadyExistsError, ActorDiedError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cos.errors import StartupError
from cos.logs import note_stderr
from cos.postgres import DatabaseTarget, read_leases
from cos.runtime._actors import (
    CoordinatorActor,
    NodeActor,
    RayHost,
    RayNode,
    alive_nodes,
    find_coordinator,
    find_host,
    lookup_actor,
    stderr_note,
)
from cos.runtime._node import Driver, Node
from cos.runtime._plan import NodePorts
from cos.settings import CosSettings, DeploymentSettings
from cos.sharding import (
    HTTP_PORT_LABEL,
    NAMESPACE,
    PORT_LABEL,
    SUBSCRIPTION_PORT_LABEL,
    Coordinator,
    PodSource,
    ShardReport,
    coordinator_name,
    host_name,
)

log = logging.getLogger(__name__)


# Ray declares a node dead after health_check_failure_threshold missed checks
# (default 5 x 3 s). The coordinator may live on that node, so a lost node is
# only handed over after Ray notices: clusters we start notice within ~6 s.
# Fewer misses make a busy but healthy node look dead (seen on 2 loaded cores).
FAST_NODE_FAILURE = {"health_check_period_ms": 1000, "health_check_failure_threshold": 6}


class NodeTakenError(StartupError):
    """A shard host of this runtime already serves the node (one host per node)."""


class ClusterMismatchError(StartupError):
    """The runtime of that name on the cluster runs with other shards or journal."""


@dataclass
class Runtime:
    """Handles of the actors this process started (the driver's view, through Ray)."""

    name: str
    coordinator: ActorHandle[Coordinator]
    hosts: dict[str, ActorHandle[Node]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def leave(self, host_id: str) -> None:
        """Hand the host's shards to the other hosts, then stop it."""
        self.hand_over(host_id)
        self.stop_host(host_id)

    def hand_over(self, host_id: str) -> None:
        """Deregister the host: the coordinator moves its shards to the others first.
        Its health answers ``NOT_SERVING`` from the start, so balancers stop using it."""
        host = self.hosts.get(host_id)
        if host is not None:
            with contextlib.suppress(RayError, TimeoutError):
                ray.get(host.shutting_down.remote(), timeout=10)
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
        stopping: list[ObjectRef[None]] = [host.stop.remote() for host in hosts]
        for ref in stopping:
            with contextlib.suppress(RayError, TimeoutError):
                ray.get(ref, timeout=60)
        actors: list[ActorHandle[Any]] = [*hosts, self.coordinator]
        for actor in actors:
            with contextlib.suppress(RayError, ValueError):
                ray.kill(actor)
        self.hosts.clear()
        self.addresses.clear()


def layout_of(num_shards: int, target: DatabaseTarget) -> str:
    """The settings hosts of one runtime must agree on, in words."""
    where = f"schema {target.schema!r} of {target.database} at {target.host}:{target.port}"
    return f"COS_NUM_SHARDS={num_shards}, journal in {where}"


def kubernetes_pods(deployment: DeploymentSettings) -> PodSource:
    """The runtime's pods from the Kubernetes API (built in the coordinator's process: only
    Kubernetes mode imports the ``kubernetes`` package)."""
    from cos.runtime._kubernetes import PodWatch

    assert deployment.kubernetes_app_label is not None  # checked with the settings
    return PodWatch(
        deployment.kubernetes_app_label,
        deployment.replica_count,
        deployment.kubernetes_formation_timeout_seconds,
        namespace=deployment.kubernetes_namespace,
    )


def coordinator_of(settings: CosSettings, target: DatabaseTarget) -> ActorHandle[Coordinator]:
    """The cluster's coordinator, created when it does not exist yet.

    A coordinator left idle by an earlier run with other settings (every host
    gone) is replaced; one that still has hosts is a configuration error.
    """
    cluster = settings.cluster
    name = coordinator_name(cluster.cluster_name)
    wanted = layout_of(cluster.num_shards, target)
    for _ in range(100):
        # Ray types .options().remote() as "handle or instance": it is a handle.
        handle = cast(
            ActorHandle[Coordinator],
            CoordinatorActor.options(
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
            ).remote(
                cluster.num_shards,
                logging=settings.logging,
                layout=wanted,
                cluster=cluster.cluster_name,
                read_leases=functools.partial(read_leases, target),
                find_host=find_host,
                find_self=functools.partial(find_coordinator, name),
                failure_timeout=cluster.host_failure_timeout_seconds,
                pods=functools.partial(kubernetes_pods, settings.deployment)
                if settings.deployment.kubernetes
                else None,
            ),
        )
        try:
            found = str(ray.get(handle.layout.remote(), timeout=60))
        except ActorDiedError:
            time.sleep(0.1)  # the idle one being replaced; its name is not free yet
            continue
        if found == wanted:
            ray.get(handle.start.remote())
            return handle
        if ray.get(handle.hosts.remote(), timeout=60):
            raise ClusterMismatchError(
                f"runtime {cluster.cluster_name!r} on this Ray cluster runs with {found};"
                f" this node has {wanted}: give every node the same settings, or another"
                " COS_CLUSTER_NAME"
            )
        log.warning("replacing the idle coordinator %s (it ran with %s)", name, found)
        ray.kill(handle, no_restart=True)
        time.sleep(0.1)
    raise ClusterMismatchError(f"could not replace the idle coordinator {name}")


def start_host(
    runtime: Runtime,
    settings: CosSettings,
    target: DatabaseTarget,
    node: RayNode,
    driver: Driver | None = None,
) -> str:
    """Start the host of ``node``, register it, and return its id. With ``driver`` (a
    process on the node's machine) the host stops serving when that process ends."""
    host_id = launch_host(runtime, settings, target, node, driver)
    register_host(runtime, host_id)
    return host_id


def advertised_host(settings: CosSettings, node: RayNode) -> str:
    """The host other nodes reach this node's gRPC port at."""
    if settings.cluster.advertise_address:
        return settings.cluster.advertise_address
    if settings.deployment.kubernetes and settings.deployment.pod_ip:
        return settings.deployment.pod_ip
    return node.ip


def ports_of(settings: CosSettings, node: RayNode) -> NodePorts:
    """Where the node's servers listen: its labels' ports (several nodes on one machine),
    else the configured ones."""
    labels = node.labels
    subscription = labels.get(SUBSCRIPTION_PORT_LABEL, settings.subscription.port)
    return NodePorts(
        grpc=int(labels.get(PORT_LABEL, settings.server.port)),
        http=int(labels.get(HTTP_PORT_LABEL, settings.http.port)),
        subscription=None if subscription is None else int(subscription),
    )


def launch_host(
    runtime: Runtime,
    settings: CosSettings,
    target: DatabaseTarget,
    node: RayNode,
    driver: Driver | None = None,
) -> str:
    """Create the node actor of ``node`` and start its gRPC server (it owns no shard yet)."""
    return begin_launch(runtime.name, settings, target, node, driver).finish(runtime)


@dataclass
class Launch:
    """A node actor created and starting (:func:`begin_launch`), while the caller does
    something else; :meth:`finish` waits for its start."""

    host_id: str
    advertise: str
    host: ActorHandle[Node] | None
    started: ObjectRef[str] | None
    taken: NodeTakenError | None = None  # raised by finish, after what the caller checked

    def finish(self, runtime: Runtime) -> str:
        """Wait for the node's start; add it to ``runtime``; return its id. Raises the
        node's own ``StartupError`` (a taken port) or ``NodeTakenError``."""
        if self.taken is not None:
            raise self.taken
        assert self.host is not None and self.started is not None
        try:
            ray.get(self.started)
        except BaseException as exc:
            self.abandon()
            cause = getattr(exc, "cause", None)
            if isinstance(cause, StartupError):
                raise cause from None
            raise
        runtime.hosts[self.host_id] = self.host
        runtime.addresses[self.host_id] = self.advertise
        return self.host_id

    def abandon(self) -> None:
        """Remove the actor: it is detached, and left alive it would hold the node's name."""
        if self.host is not None:
            with contextlib.suppress(RayError, ValueError):
                ray.kill(self.host)


def begin_launch(
    runtime_name: str,
    settings: CosSettings,
    target: DatabaseTarget,
    node: RayNode,
    driver: Driver | None = None,
) -> Launch:
    """Create the node actor of ``node`` and ask it to start; return at once."""
    ports = ports_of(settings, node)
    advertise = f"{advertised_host(settings, node)}:{ports.grpc}"
    host_id = host_name(runtime_name, node.node_id)
    try:
        host = cast(
            ActorHandle[Node],
            NodeActor.options(
                name=host_id,
                namespace=NAMESPACE,
                lifetime="detached",
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
            ).remote(settings, target, host_id, ports=ports, advertise=advertise, driver=driver),
        )
    except ActorAlreadyExistsError:
        taken = NodeTakenError(
            f"{host_id} already serves Ray node {node.node_id[:12]}: run one cos serve per"
            " node (on a machine with several nodes, COS_RAY_TEMP_DIR picks the node;"
            " runtimes sharing a cluster need different COS_CLUSTER_NAMEs)"
        )
        return Launch(host_id, advertise, None, None, taken)
    return Launch(host_id, advertise, host, host.start.remote())


def register_host(runtime: Runtime, host_id: str) -> list[int]:
    """Register a launched host: the coordinator hands it its share; returns those shards."""
    host, address = RayHost(runtime.hosts[host_id]), runtime.addresses[host_id]
    shards: list[int] = ray.get(runtime.coordinator.register_host.remote(host_id, host, address))
    return shards


def start_runtime(
    settings: CosSettings, target: DatabaseTarget, nodes: list[RayNode] | None = None
) -> Runtime:
    """The coordinator and one host per node (default: every alive node)."""
    runtime = Runtime(settings.cluster.cluster_name, coordinator_of(settings, target))
    try:
        for node in alive_nodes() if nodes is None else nodes:
            start_host(runtime, settings, target, node)
    except BaseException:
        runtime.stop()
        raise
    return runtime


def join_node(settings: CosSettings, target: DatabaseTarget, control: str | None = None) -> Runtime:
    """What ``cos serve`` does: start and register the host of the node it runs on (which
    answers this process on the Unix socket ``control``, when given)."""
    here = ray.get_runtime_context().get_node_id()
    node = next(n for n in alive_nodes() if n.node_id == here)
    # The host lives on this machine: it stops serving the moment this driver is gone.
    name, driver = settings.cluster.cluster_name, Driver(os.getpid(), control)
    # The coordinator, wherever it runs, prints its lines where this node's cos serve does.
    note_stderr(stderr_note(here, name))
    # The node's actor and the coordinator start side by side, each a process of its own.
    launch = begin_launch(name, settings, target, node, driver)
    try:
        coordinator = coordinator_of(settings, target)
    except BaseException:
        launch.abandon()
        raise
    runtime = Runtime(name, coordinator)
    register_host(runtime, launch.finish(runtime))
    return runtime


def shard_report(cluster_name: str) -> list[ShardReport]:
    """The shard table of the runtime named ``cluster_name``, from its coordinator (Ray
    connected); ValueError when the cluster runs no such runtime."""
    coordinator = lookup_actor(coordinator_name(cluster_name))
    rows: list[ShardReport] = ray.get(coordinator.report.remote(), timeout=60)
    return rows
