"""``chief_of_state.v1.ChiefOfStateService``: ProcessCommand and GetState."""

from __future__ import annotations

from typing import Protocol

import grpc
from google.protobuf import any_pb2

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.errors import InvalidRequestError, NotFoundError
from cos.service.status import abort_with
from cos.sharding.entity import EntityState, Metadata
from cos.sharding.forward import FORWARDED


class Router(Protocol):
    """Runs a call on the shard that owns the entity, here or on its owner."""

    async def process_command(
        self, entity_id: str, command: any_pb2.Any, metadata: Metadata, forwarded: bool
    ) -> EntityState: ...

    async def get_state(self, entity_id: str, forwarded: bool) -> EntityState: ...


class ChiefOfStateServicer(service_pb2_grpc.ChiefOfStateServiceServicer):
    """Validates requests, hands them to the router and maps errors to statuses."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def ProcessCommand(
        self, request: service_pb2.ProcessCommandRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ProcessCommandResponse:
        try:
            _require_entity_id(request.entity_id)
            if not request.HasField("command") or not request.command.type_url:
                raise InvalidRequestError("command is required")
            metadata = [(m.key, m.value) for m in context.invocation_metadata() or ()]
            forwarded = any(key == FORWARDED for key, _ in metadata)
            result = await self._router.process_command(
                request.entity_id, request.command, metadata, forwarded
            )
        except Exception as exc:
            await abort_with(context, exc, "ProcessCommand")
        return service_pb2.ProcessCommandResponse(state=result.state, meta=result.meta)

    async def GetState(
        self, request: service_pb2.GetStateRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetStateResponse:
        try:
            _require_entity_id(request.entity_id)
            forwarded = any(m.key == FORWARDED for m in context.invocation_metadata() or ())
            result = await self._router.get_state(request.entity_id, forwarded)
            if result.revision == 0:
                raise NotFoundError(f"entity {request.entity_id!r} not found")
        except Exception as exc:
            await abort_with(context, exc, "GetState")
        return service_pb2.GetStateResponse(state=result.state, meta=result.meta)


def _require_entity_id(entity_id: str) -> None:
    if not entity_id:
        raise InvalidRequestError("entity_id must not be empty")
