"""``chief_of_state.v1.ChiefOfStateService``: ProcessCommand and GetState, over the write
side's protocol-neutral use cases (``cos.writeside.api``)."""

from __future__ import annotations

import time

import grpc

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.service._status import abort_with
from cos.transport import Metadata
from cos.writeside import CommandHandler, process_command, read_state


class ChiefOfStateServicer(service_pb2_grpc.ChiefOfStateServiceServicer):
    """Turns requests into the write side's use cases, over the chain of interceptors and
    the router, and maps errors to statuses."""

    def __init__(self, commands: CommandHandler) -> None:
        self._commands = commands

    async def ProcessCommand(
        self, request: service_pb2.ProcessCommandRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ProcessCommandResponse:
        try:
            result = await process_command(
                self._commands,
                request.entity_id,
                request.command,
                _metadata(context),
                deadline=_deadline(context),
            )
        except Exception as exc:
            await abort_with(context, exc, "ProcessCommand")
        return service_pb2.ProcessCommandResponse(state=result.state, meta=result.meta)

    async def GetState(
        self, request: service_pb2.GetStateRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetStateResponse:
        try:
            result = await read_state(
                self._commands, request.entity_id, _metadata(context), deadline=_deadline(context)
            )
        except Exception as exc:
            await abort_with(context, exc, "GetState")
        return service_pb2.GetStateResponse(state=result.state, meta=result.meta)


def _metadata(context: grpc.aio.ServicerContext) -> Metadata:
    return tuple((m.key, m.value) for m in context.invocation_metadata() or ())


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline on the ``time.monotonic()`` clock, if it set one."""
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left
