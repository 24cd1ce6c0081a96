"""What the server interceptors of a node share: each wraps the behaviour of some methods
and leaves the rest as they are."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

# A unary-request method's behaviour, as gRPC's handlers hold it.
Behaviour = Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]


class MethodInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that may give a method another handler (:meth:`wrap`). The
    handler made for a method is kept, and used again while the method's own handler is
    the same object (it is, for the life of a server): one is made per method, not per
    call."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.grpc.RpcMethodHandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]
        ],
        details: grpc.grpc.RpcMethodHandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        made = self._made.get(details.method)
        if made is None or made[0] is not handler:
            made = self._made[details.method] = (handler, self.wrap(details.method, handler))
        return made[1]

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler ``method`` is served with (``handler`` itself when unchanged)."""
        return handler


def unary_unary(
    handler: grpc.RpcMethodHandler,
    behaviour: Behaviour,
    deserializer: Callable[[bytes], object] | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` with ``behaviour`` (and ``deserializer``, when given) in place of its own."""
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
