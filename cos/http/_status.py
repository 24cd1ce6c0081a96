"""Failures as HTTP answers: the gRPC status a call fails with (the one table of
``cos.service.status``), its HTTP code by the google.api mapping, and a body in the JSON
form of ``google.rpc.Status`` plus ``error``, the message, where Chief of State puts it."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, descriptor_pool
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2  # noqa: F401 (loads the detail types)

from cos.http._convert import AnyCodec, Json
from cos.status import DETAILS_KEY, Trailers, failure_of

# google.api's HTTP mapping of the canonical codes (google/rpc/code.proto).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status of a gRPC code; 500 for INTERNAL, UNKNOWN, DATA_LOSS."""
    return HTTP_STATUS.get(code, 500)


def status_body(
    code: grpc.StatusCode, message: str, details: Sequence[any_pb2.Any], codec: AnyCodec
) -> dict[str, Json]:
    """``google.rpc.Status`` as JSON (``code`` is the number), with ``error``."""
    return {
        "code": code.value[0],
        "message": message,
        "details": [detail_to_json(detail, codec) for detail in details],
        "error": message,
    }


def failure(exc: Exception, method: str, codec: AnyCodec) -> tuple[int, dict[str, Json]]:
    """The HTTP status and body a failed call is answered with."""
    code, message, trailers = failure_of(exc, method)
    return http_status(code), status_body(code, message, details_of(trailers), codec)


def details_of(trailers: Trailers) -> list[any_pb2.Any]:
    """The rich error details a handler attached (``grpc-status-details-bin``)."""
    raw = next((value for key, value in trailers if key == DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return []
    try:
        return list(status_pb2.Status.FromString(raw).details)
    except DecodeError:
        return []


def detail_to_json(detail: any_pb2.Any, codec: AnyCodec) -> Json:
    """A detail as JSON when its type is known to the descriptor sets or is one of
    ``google.rpc``'s error details (``ErrorInfo``, ``BadRequest``, ...); else base64."""
    if not codec.knows(detail.type_url) and _is_rpc_detail(detail.type_url):
        return _RPC_DETAILS.to_json(detail)
    return codec.to_json(detail)


def _is_rpc_detail(type_url: str) -> bool:
    return type_url.rsplit("/", 1)[-1].startswith("google.rpc.")


# The default pool holds google.rpc's error details (imported above); only those are
# looked up there.
_RPC_DETAILS = AnyCodec(descriptor_pool.Default())
