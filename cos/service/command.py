"""``chief_of_state.v1.ChiefOfStateService``: ProcessCommand and GetState.

:func:`process_command` and :func:`read_state` hold what every protocol does with a
request (validation, the request object, ``NOT_FOUND`` at revision 0): the gRPC servicer
here and the HTTP/JSON API (``cos.http``) both call them, so both say the same thing.
"""

from __future__ import annotations

import time

import grpc
from google.protobuf import any_pb2

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.errors import NotFoundError, shorten
from cos.service.status import abort_with
from cos.sharding.commands import CommandHandler, CommandRequest, StateRequest
from cos.sharding.entity import EntityState, Metadata
from cos.sharding.limits import check_command, check_entity_id
from cos.transport import FORWARDED


async def process_command(
    commands: CommandHandler,
    entity_id: str,
    command: any_pb2.Any,
    metadata: Metadata,
    *,
    deadline: float | None = None,
) -> EntityState:
    """Validate a command and run it down the chain."""
    check_entity_id(entity_id)
    check_command(command)  # "no command sent" when missing, as in CoS
    request = CommandRequest(
        entity_id=entity_id,
        command=command,
        metadata=metadata,
        forwarded=any(key == FORWARDED for key, _ in metadata),
        deadline=deadline,
    )
    return await commands.process_command(request)


async def read_state(
    commands: CommandHandler,
    entity_id: str,
    metadata: Metadata,
    *,
    deadline: float | None = None,
) -> EntityState:
    """Validate a state read and run it; ``NOT_FOUND`` for an entity without revision."""
    check_entity_id(entity_id)
    forwarded = any(key == FORWARDED for key, _ in metadata)
    result = await commands.get_state(StateRequest(entity_id, forwarded, deadline, metadata))
    if result.revision == 0:
        raise NotFoundError(f"entity {shorten(entity_id)} not found")
    return result


class ChiefOfStateServicer(service_pb2_grpc.ChiefOfStateServiceServicer):
    """Validates requests, turns them into command requests for the chain of interceptors
    and the router, and maps errors to statuses."""

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
