"""``cos.v1.ClusterService``: the shard table, answered on every node's port."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from cos.errors import CosError
from cos.sharding.coordinator import ShardReport
from cos.v1 import cluster_pb2, cluster_pb2_grpc

log = logging.getLogger(__name__)


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
        try:
            rows = await self._table.shard_report()
        except CosError as exc:
            await context.abort(exc.code, str(exc))
        except Exception as exc:
            log.exception("GetShards failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"GetShards failed: {exc}")
        return cluster_pb2.GetShardsResponse(shards=[_ownership(row) for row in rows])


def _ownership(row: ShardReport) -> cluster_pb2.ShardOwnership:
    message = cluster_pb2.ShardOwnership(
        shard=row.shard, host_id=row.host_id, address=row.address, epoch=row.epoch
    )
    if row.active_entities is not None:
        message.active_entities = row.active_entities
    return message
