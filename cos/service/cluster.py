"""``cos.v1.ClusterService``: the shard table, answered on every node's port."""

from __future__ import annotations

from typing import Protocol

import grpc

from cos.service.status import answer
from cos.sharding.report import ShardReport
from cos.v1 import cluster_pb2, cluster_pb2_grpc


class ShardTable(Protocol):
    """Where the table comes from: the host, which asks the coordinator."""

    async def shard_report(self) -> list[ShardReport]: ...


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    """Turns the coordinator's report into ``GetShardsResponse``."""

    def __init__(self, table: ShardTable) -> None:
        self._table = table

    async def GetShards(
        self, request: cluster_pb2.GetShardsRequest, context: grpc.aio.ServicerContext
    ) -> cluster_pb2.GetShardsResponse:
        rows = await answer(context, self._table.shard_report(), "GetShards")
        return cluster_pb2.GetShardsResponse(shards=[_ownership(row) for row in rows])


def _ownership(row: ShardReport) -> cluster_pb2.ShardOwnership:
    message = cluster_pb2.ShardOwnership(
        shard=row.shard, host_id=row.host_id, address=row.address, epoch=row.epoch
    )
    if row.active_entities is not None:
        message.active_entities = row.active_entities
    return message
