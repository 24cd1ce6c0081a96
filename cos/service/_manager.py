"""``chief_of_state.v1.ReadSideManagerService``: what ``cos-cli readside`` calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, cast

import grpc

from chief_of_state.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from cos.readside import ReadSideManager
from cos.service._status import answer
from cos.storage import Offset

Reply = TypeVar("Reply")
# One of ReadSideManager.pause, resume, restart, skip: (read side, shard or all) -> done.
Action = Callable[[ReadSideManager, str, "int | None"], Awaitable[None]]


class _Request(Protocol):
    """Every request of the service names a read side; the *ByShard ones a shard too."""

    @property
    def read_side_id(self) -> str: ...


class _ShardRequest(_Request, Protocol):
    @property
    def cluster_shard_number(self) -> int: ...


def _offset(offset: Offset) -> common_pb2.ReadSideOffset:
    return common_pb2.ReadSideOffset(cluster_shard_number=offset.shard, offset=offset.position)


def _change(
    method: str, action: Action, reply: Callable[..., Reply]
) -> Callable[[ReadSideManagerServicer, _Request, grpc.aio.ServicerContext], Awaitable[Reply]]:
    """The RPC ``method``: apply ``action`` to all shards (or the request's one, for the
    *ByShard RPCs), then answer ``successful=true``: only once the change is stored."""
    by_shard = method.endswith("ByShard")

    async def rpc(
        servicer: ReadSideManagerServicer, request: _Request, context: grpc.aio.ServicerContext
    ) -> Reply:
        shard = cast(_ShardRequest, request).cluster_shard_number if by_shard else None
        change = action(servicer.manager, request.read_side_id, shard)
        await answer(context, change, method)
        return reply(successful=True)

    rpc.__name__ = rpc.__qualname__ = method
    return rpc


class ReadSideManagerServicer:
    """Operator actions on read sides, each stored before it is answered.

    It has the ten RPCs of ``ReadSideManagerService``; eight are made by :func:`_change`,
    so it does not subclass the generated base class (whose methods mypy would compare
    with those attributes one by one). :func:`add_to_server` registers it.
    """

    def __init__(self, manager: ReadSideManager) -> None:
        self.manager = manager

    async def GetLatestOffset(
        self, request: manager_pb2.GetLatestOffsetRequest, context: grpc.aio.ServicerContext
    ) -> manager_pb2.GetLatestOffsetResponse:
        call = self.manager.offsets(request.read_side_id)
        offsets = await answer(context, call, "GetLatestOffset")
        return manager_pb2.GetLatestOffsetResponse(offsets=[_offset(o) for o in offsets])

    async def GetLatestOffsetByShard(
        self,
        request: manager_pb2.GetLatestOffsetByShardRequest,
        context: grpc.aio.ServicerContext,
    ) -> manager_pb2.GetLatestOffsetByShardResponse:
        call = self.manager.offsets(request.read_side_id, request.cluster_shard_number)
        offsets = await answer(context, call, "GetLatestOffsetByShard")
        return manager_pb2.GetLatestOffsetByShardResponse(offsets=_offset(offsets[0]))

    # The eight changes: every one answered only once it is stored.
    PauseReadSide = _change(
        "PauseReadSide", ReadSideManager.pause, manager_pb2.PauseReadSideResponse
    )
    PauseReadSideByShard = _change(
        "PauseReadSideByShard", ReadSideManager.pause, manager_pb2.PauseReadSideByShardResponse
    )
    ResumeReadSide = _change(
        "ResumeReadSide", ReadSideManager.resume, manager_pb2.ResumeReadSideResponse
    )
    ResumeReadSideByShard = _change(
        "ResumeReadSideByShard", ReadSideManager.resume, manager_pb2.ResumeReadSideByShardResponse
    )
    RestartReadSide = _change(
        "RestartReadSide", ReadSideManager.restart, manager_pb2.RestartReadSideResponse
    )
    RestartReadSideByShard = _change(
        "RestartReadSideByShard",
        ReadSideManager.restart,
        manager_pb2.RestartReadSideByShardResponse,
    )
    SkipOffset = _change("SkipOffset", ReadSideManager.skip, manager_pb2.SkipOffsetResponse)
    SkipOffsetByShard = _change(
        "SkipOffsetByShard", ReadSideManager.skip, manager_pb2.SkipOffsetByShardResponse
    )


def add_to_server(servicer: ReadSideManagerServicer, server: grpc.aio.Server) -> None:
    """Serve ``servicer`` as ``chief_of_state.v1.ReadSideManagerService`` on ``server``."""
    # The generated registration only looks the ten RPCs up by name.
    generated = cast(manager_pb2_grpc.ReadSideManagerServiceServicer, servicer)
    manager_pb2_grpc.add_ReadSideManagerServiceServicer_to_server(generated, server)
