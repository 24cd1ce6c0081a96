"""Building commands for the test write handler and reading its states."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import any_pb2, struct_pb2

from chief_of_state.v1 import service_pb2, service_pb2_grpc


def command(**fields: Any) -> any_pb2.Any:
    message = struct_pb2.Struct()
    message.update(fields)
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def request(entity_id: str, **fields: Any) -> service_pb2.ProcessCommandRequest:
    return service_pb2.ProcessCommandRequest(entity_id=entity_id, command=command(**fields))


def struct_of(value: any_pb2.Any) -> dict[str, Any]:
    message = struct_pb2.Struct()
    assert value.Unpack(message), value.type_url
    return dict(message)


def state_of(reply: Any) -> dict[str, Any]:
    """The Struct state of a ProcessCommand or GetState reply, as a dict."""
    return struct_of(reply.state)


async def send(
    stub: service_pb2_grpc.ChiefOfStateServiceStub, entity_id: str, *headers: str, **fields: Any
) -> service_pb2.ProcessCommandResponse:
    """ProcessCommand of ``request(entity_id, **fields)`` with request headers given as
    ``"name=value"`` (e.g. ``"x-cos-idempotency-key=k1"``)."""
    metadata = tuple(tuple(header.split("=", 1)) for header in headers)
    reply: service_pb2.ProcessCommandResponse = await stub.ProcessCommand(
        request(entity_id, **fields), metadata=metadata
    )
    return reply


def base64_command(**fields: Any) -> str:
    """A command as the HTTP API's base64 form carries it."""
    return base64.b64encode(command(**fields).SerializeToString()).decode()
