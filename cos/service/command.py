"""``chief_of_state.v1.ChiefOfStateService``: ProcessCommand and GetState."""

from __future__ import annotations

import time

import grpc

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.errors import NotFoundError, shorten
from cos.service.status import abort_with
from cos.sharding.commands import CommandHandler, CommandRequest, StateRequest
from cos.sharding.limits import check_command, check_entity_id
from cos.transport import FORWARDED


class ChiefOfStateServicer(service_pb2_grpc.ChiefOfStateServiceServicer):
    """Validates requests, turns them into command requests for the chain of interceptors
    and the router, and maps errors to statuses."""

    def __init__(self, commands: CommandHandler) -> None:
        self._commands = commands

    async def ProcessCommand(
        self, request: service_pb2.ProcessCommandRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ProcessCommandResponse:
        try:
            check_entity_id(request.entity_id)
            check_command(request.command)  # "no command sent" when missing, as in CoS
            metadata = tuple((m.key, m.value) for m in context.invocation_metadata() or ())
            command = CommandRequest(
                entity_id=request.entity_id,
                command=request.command,
                metadata=metadata,
                forwarded=any(key == FORWARDED for key, _ in metadata),
                deadline=_deadline(context),
            )
            result = await self._commands.process_command(command)
        except Exception as exc:
            await abort_with(context, exc, "ProcessCommand")
        return service_pb2.ProcessCommandResponse(state=result.state, meta=result.meta)

    async def GetState(
        self, request: service_pb2.GetStateRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetStateResponse:
        try:
            check_entity_id(request.entity_id)
            metadata = tuple((m.key, m.value) for m in context.invocation_metadata() or ())
            forwarded = any(key == FORWARDED for key, _ in metadata)
            read = StateRequest(request.entity_id, forwarded, _deadline(context), metadata)
            result = await self._commands.get_state(read)
            if result.revision == 0:
                raise NotFoundError(f"entity {shorten(request.entity_id)} not found")
        except Exception as exc:
            await abort_with(context, exc, "GetState")
        return service_pb2.GetStateResponse(state=result.state, meta=result.meta)


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline on the ``time.monotonic()`` clock, if it set one."""
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left
