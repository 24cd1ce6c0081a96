"""``cos.v1.ReadSideStatusService``: what ``cos-cli readside status`` calls."""

from __future__ import annotations

import grpc

from cos.readside import ReadSideManager
from cos.service._status import answer
from cos.storage import ShardStatus
from cos.v1 import readside_pb2, readside_pb2_grpc


class ReadSideStatusServicer(readside_pb2_grpc.ReadSideStatusServiceServicer):
    """Offsets against the journal, lags, pauses, stops and last failures, by shard."""

    def __init__(self, manager: ReadSideManager) -> None:
        self._manager = manager

    async def GetReadSideStatus(
        self, request: readside_pb2.GetReadSideStatusRequest, context: grpc.aio.ServicerContext
    ) -> readside_pb2.GetReadSideStatusResponse:
        shard = request.cluster_shard_number if request.HasField("cluster_shard_number") else None
        rows = await answer(
            context, self._manager.status(request.read_side_id, shard), "GetReadSideStatus"
        )
        return readside_pb2.GetReadSideStatusResponse(shards=[_shard_status(r) for r in rows])


def _shard_status(row: ShardStatus) -> readside_pb2.ReadSideShardStatus:
    message = readside_pb2.ReadSideShardStatus(
        cluster_shard_number=row.offset.shard,
        offset=row.offset.position,
        journal_position=row.journal_position,
        paused=row.offset.paused,
        stopped_reason=row.offset.stopped_reason or "",
        lag_seconds=row.lag_seconds,
    )
    if row.last_error is not None:
        message.last_error = row.last_error.text
        message.last_error_time.FromDatetime(row.last_error.at)
    return message
