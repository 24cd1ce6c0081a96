"""What a node is made from, known before any of it starts: light, so that the driver,
which only launches nodes, does not load what a node runs (``cos.runtime._assembly``)."""

from __future__ import annotations

from dataclasses import dataclass

from chief_of_state.v1 import manager_pb2, service_pb2
from cos.postgres import DatabaseTarget
from cos.settings import CosSettings
from cos.v1 import cluster_pb2, history_pb2, readside_pb2, subscription_pb2
from cos.writeside import Interceptor

# Every gRPC service of a node's port, by full name (its health answers for each).
SERVICES = [
    service.full_name
    for module in (
        service_pb2,
        manager_pb2,
        cluster_pb2,
        readside_pb2,
        history_pb2,
        subscription_pb2,
    )
    for service in module.DESCRIPTOR.services_by_name.values()
]


@dataclass(frozen=True)
class NodePorts:
    """Where one node listens: its gRPC port, its HTTP/JSON API's, its subscription
    process's (none: no such process). Chosen once, when the node is launched."""

    grpc: int
    http: int
    subscription: int | None = None


@dataclass(frozen=True)
class NodePlan:
    """What a node is made from."""

    settings: CosSettings
    target: DatabaseTarget
    host_id: str
    ports: NodePorts
    advertise: str  # where other nodes reach its gRPC port
    interceptors: tuple[Interceptor, ...] = ()  # innermost after telemetry's, outermost first
