"""The services a node serves on its gRPC port, registered in one place (the subscription
process serves one of them on a port of its own)."""

from __future__ import annotations

import grpc

from chief_of_state.v1 import service_pb2_grpc
from cos.history import HistoryReader
from cos.readside import ReadSideManager
from cos.service._cluster import ClusterServicer, HostHeartbeats, ShardTable
from cos.service._command import ChiefOfStateServicer
from cos.service._history import HistoryServicer
from cos.service._manager import ReadSideManagerServicer
from cos.service._manager import add_to_server as add_manager_to_server
from cos.service._readside_status import ReadSideStatusServicer
from cos.service._subscription import SubscriptionServicer
from cos.subscription import SubscriptionHub
from cos.v1 import cluster_pb2_grpc, history_pb2_grpc, readside_pb2_grpc, subscription_pb2_grpc
from cos.writeside import CommandHandler


def add_node_services(
    server: grpc.aio.Server,
    *,
    commands: CommandHandler,
    host: ShardTable,
    manager: ReadSideManager,
    heartbeats: HostHeartbeats,
    history: HistoryReader,
    hub: SubscriptionHub | None,
    num_shards: int,
    host_prefix: str,
) -> None:
    """Chief of State's client and operator services, and ours (``cos.v1``)."""
    service_pb2_grpc.add_ChiefOfStateServiceServicer_to_server(
        ChiefOfStateServicer(commands), server
    )
    add_manager_to_server(ReadSideManagerServicer(manager), server)
    cluster = ClusterServicer(host, heartbeats=heartbeats, host_prefix=host_prefix)
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster, server)
    readside_pb2_grpc.add_ReadSideStatusServiceServicer_to_server(
        ReadSideStatusServicer(manager), server
    )
    history_pb2_grpc.add_HistoryServiceServicer_to_server(HistoryServicer(history), server)
    add_subscription_service(server, hub, num_shards=num_shards)


def add_subscription_service(
    server: grpc.aio.Server, hub: SubscriptionHub | None, *, num_shards: int
) -> None:
    """``cos.v1.SubscriptionService`` over ``hub`` (``UNIMPLEMENTED`` when it is None)."""
    subscription_pb2_grpc.add_SubscriptionServiceServicer_to_server(
        SubscriptionServicer(hub, num_shards=num_shards), server
    )
