"""The write side's use cases, protocol-neutral: what every protocol does with a request.

:func:`process_command` and :func:`read_state` hold the validation, the request object and
``NOT_FOUND`` at revision 0. The gRPC servicer (``cos.service``) and the HTTP/JSON API
(``cos.http``) both call them, so both say the same thing.
"""

from __future__ import annotations

from google.protobuf import any_pb2

from cos.errors import NotFoundError, shorten
from cos.transport import FORWARDED, Metadata
from cos.writeside._commands import CommandHandler, CommandRequest, StateRequest
from cos.writeside._entity import EntityState
from cos.writeside._limits import check_command, check_entity_id


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
