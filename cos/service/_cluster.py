"""``cos.v1.ClusterService``: the shard table and the hosts' health, answered on every
node's port."""

from __future__ import annotations

from typing import Protocol

import grpc

from cos.service._status import answer
from cos.sharding import HostHealth, ShardReport, host_health
from cos.storage import Heartbeat
from cos.v1 import cluster_pb2, cluster_pb2_grpc


class ShardTable(Protocol):
    """Where the table comes from: the host, which asks the coordinator."""

    async def shard_report(self) -> list[ShardReport]: ...


class HostHeartbeats(Protocol):
    """Where the heartbeats come from: the hosts' rows in the database."""

    async def heartbeats(self, host_prefix: str) -> list[Heartbeat]: ...


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    """Turns the coordinator's report (and the heartbeats of the runtime's hosts, those
    whose id starts with ``host_prefix``) into ``GetShardsResponse`` and
    ``GetClusterHealthResponse``."""

    def __init__(self, table: ShardTable, *, heartbeats: HostHeartbeats, host_prefix: str) -> None:
        self._table = table
        self._heartbeats = heartbeats
        self._host_prefix = host_prefix

    async def GetShards(
        self, request: cluster_pb2.GetShardsRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.GetShardsResponse:
        rows = await answer(context, self._table.shard_report(), "GetShards")
        return cluster_pb2.GetShardsResponse(shards=[_ownership(row) for row in rows])

    async def GetClusterHealth(
        self, request: cluster_pb2.GetClusterHealthRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.GetClusterHealthResponse:
        rows = await answer(context, self._table.shard_report(), "GetClusterHealth")
        beats = await answer(
            context, self._heartbeats.heartbeats(self._host_prefix), "GetClusterHealth"
        )
        hosts = host_health(rows, beats)
        return cluster_pb2.GetClusterHealthResponse(hosts=[_host(host) for host in hosts])


def _ownership(row: ShardReport) -> cluster_pb2.ShardOwnership:
    message = cluster_pb2.ShardOwnership(
        shard=row.shard, host_id=row.host_id, address=row.address, epoch=row.epoch
    )
    if row.active_entities is not None:
        message.active_entities = row.active_entities
    return message


def _host(host: HostHealth) -> cluster_pb2.HostHealth:
    message = cluster_pb2.HostHealth(host_id=host.host_id, address=host.address, shards=host.shards)
    if host.active_entities is not None:
        message.active_entities = host.active_entities
    if host.heartbeat is not None:
        message.heartbeat_time.FromDatetime(host.heartbeat.at)
        message.heartbeat_age_seconds = host.heartbeat.age_seconds
    return message
