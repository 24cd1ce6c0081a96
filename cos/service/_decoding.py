"""Requests whose body does not decode are refused with INVALID_ARGUMENT and one log line.

gRPC decodes a request before any servicer runs. Left alone, an undecodable body ends
as ``UNKNOWN`` with a full traceback in the log, so anyone can fill the log by sending
garbage. This interceptor gives every method with a unary request (unary-unary and
server-streaming) a deserializer that cannot raise; the method then answers
``INVALID_ARGUMENT`` naming the message type, without running.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import grpc

from cos.service._interceptors import Behaviour, MethodInterceptor, unary_unary

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Reply = TypeVar("Reply")


class _Undecodable:
    """What the deserializer returns instead of raising."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


class _SafeDeserializer(Generic[Request]):
    def __init__(self, deserialize: Callable[[bytes], Request]) -> None:
        self._deserialize = deserialize

    def __call__(self, data: bytes) -> Request | _Undecodable:
        try:
            return self._deserialize(data)
        except Exception as exc:  # protobuf raises DecodeError, or ValueError on bad UTF-8
            return _Undecodable(f"{type(exc).__name__}: {str(exc)[:200]}")


class RefuseUndecodable(MethodInterceptor):
    """Wraps every method with a unary request so an undecodable body is INVALID_ARGUMENT."""

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:
            return handler
        deserializer = _SafeDeserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return unary_unary(handler, _refusing(method, handler.unary_unary), deserializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _refusing_stream(method, handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


async def _refuse(method: str, request: _Undecodable, context: grpc.aio.ServicerContext) -> None:
    log.warning("%s: refused a request whose body does not decode", method)
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request body is not a valid request of {method}: {request.problem}",
    )


def _refusing(method: str, behaviour: Behaviour) -> Behaviour:
    async def unary_unary(request: object, context: grpc.aio.ServicerContext) -> object:
        if isinstance(request, _Undecodable):
            await _refuse(method, request, context)
        return await behaviour(request, context)

    return unary_unary


def _refusing_stream(
    method: str, behaviour: Callable[[object, grpc.aio.ServicerContext], object]
) -> Callable[[object, grpc.aio.ServicerContext], AsyncIterator[object]]:
    async def unary_stream(
        request: object, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[object]:
        if isinstance(request, _Undecodable):
            await _refuse(method, request, context)
        replies = behaviour(request, context)
        if inspect.isasyncgen(replies):  # a servicer that yields its replies
            async for reply in replies:
                yield reply
        elif inspect.isawaitable(replies):  # one that writes them with context.write
            await replies

    return unary_stream
