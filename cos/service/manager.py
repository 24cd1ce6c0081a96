"""``chief_of_state.v1.ReadSideManagerService``: what ``cos-cli readside`` calls."""

from __future__ import annotations

from typing import Any

from chief_of_state.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from cos.readside.manager import ReadSideManager
from cos.readside.offsets import Offset
from cos.service.status import answer


def _offset(offset: Offset) -> common_pb2.ReadSideOffset:
    return common_pb2.ReadSideOffset(cluster_shard_number=offset.shard, offset=offset.position)


class ReadSideManagerServicer(manager_pb2_grpc.ReadSideManagerServiceServicer):
    """Each change is answered ``successful=true`` only once it is stored."""

    def __init__(self, manager: ReadSideManager) -> None:
        self._manager = manager

    async def GetLatestOffset(self, request: Any, context: Any) -> Any:
        offsets = await answer(
            context, self._manager.offsets(request.read_side_id), "GetLatestOffset"
        )
        return manager_pb2.GetLatestOffsetResponse(offsets=[_offset(o) for o in offsets])

    async def GetLatestOffsetByShard(self, request: Any, context: Any) -> Any:
        call = self._manager.offsets(request.read_side_id, request.cluster_shard_number)
        offsets = await answer(context, call, "GetLatestOffsetByShard")
        return manager_pb2.GetLatestOffsetByShardResponse(offsets=_offset(offsets[0]))

    async def _change(self, action: str, request: Any, context: Any, by_shard: bool) -> Any:
        shard = request.cluster_shard_number if by_shard else None
        call = getattr(self._manager, action)(request.read_side_id, shard)
        await answer(context, call, action)
        return True

    async def PauseReadSide(self, request: Any, context: Any) -> Any:
        await self._change("pause", request, context, by_shard=False)
        return manager_pb2.PauseReadSideResponse(successful=True)

    async def PauseReadSideByShard(self, request: Any, context: Any) -> Any:
        await self._change("pause", request, context, by_shard=True)
        return manager_pb2.PauseReadSideByShardResponse(successful=True)

    async def ResumeReadSide(self, request: Any, context: Any) -> Any:
        await self._change("resume", request, context, by_shard=False)
        return manager_pb2.ResumeReadSideResponse(successful=True)

    async def ResumeReadSideByShard(self, request: Any, context: Any) -> Any:
        await self._change("resume", request, context, by_shard=True)
        return manager_pb2.ResumeReadSideByShardResponse(successful=True)

    async def RestartReadSide(self, request: Any, context: Any) -> Any:
        await self._change("restart", request, context, by_shard=False)
        return manager_pb2.RestartReadSideResponse(successful=True)

    async def RestartReadSideByShard(self, request: Any, context: Any) -> Any:
        await self._change("restart", request, context, by_shard=True)
        return manager_pb2.RestartReadSideByShardResponse(successful=True)

    async def SkipOffset(self, request: Any, context: Any) -> Any:
        await self._change("skip", request, context, by_shard=False)
        return manager_pb2.SkipOffsetResponse(successful=True)

    async def SkipOffsetByShard(self, request: Any, context: Any) -> Any:
        await self._change("skip", request, context, by_shard=True)
        return manager_pb2.SkipOffsetByShardResponse(successful=True)
