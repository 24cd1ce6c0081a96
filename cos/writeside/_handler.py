"""Client of the application's ``WriteSideHandlerService``: one shared aio channel."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, cast

import grpc

from chief_of_state.v1 import writeside_pb2, writeside_pb2_grpc
from cos.breaker import NO_BREAKER, Breaker, BreakerSettings
from cos.status import call_error
from cos.transport import DEFAULT_GRPC, GrpcSettings, Metadata, not_connected, open_channel
from cos.writeside._settings import HandlerSettings

Reply = TypeVar("Reply", writeside_pb2.HandleCommandResponse, writeside_pb2.HandleEventResponse)


@dataclass(frozen=True, slots=True)
class HandlerCall:
    """How one handler call is made: the headers it carries, and when the command's
    handler time (``COS_COMMAND_HANDLER_TIMEOUT``) runs out, on the
    ``time.monotonic()`` clock."""

    metadata: Metadata = ()
    budget_end: float | None = None


class WriteHandler(Protocol):
    """The application's write handler, as a shard calls it."""

    async def handle_command(
        self, request: writeside_pb2.HandleCommandRequest, call: HandlerCall
    ) -> writeside_pb2.HandleCommandResponse:
        """The events a command produces."""
        ...

    async def handle_event(
        self, request: writeside_pb2.HandleEventRequest, call: HandlerCall
    ) -> writeside_pb2.HandleEventResponse:
        """The state an event produces."""
        ...


class WriteHandlerClient:
    """Calls ``HandleCommand`` / ``HandleEvent`` with the configured deadline, TLS and headers."""

    def __init__(
        self,
        settings: HandlerSettings,
        *,
        grpc_settings: GrpcSettings = DEFAULT_GRPC,
        breaker: BreakerSettings = NO_BREAKER,
    ) -> None:
        self._target = settings.target
        self._call_timeout = grpc_settings.call_timeout_ms / 1000
        self._tls = settings.use_tls
        self._ca_file = settings.tls_ca_file
        self._grpc = grpc_settings
        self._breaker = Breaker(breaker, f"write handler at {self._target}")
        self._channel: grpc.aio.Channel | None = None
        self._stub: writeside_pb2_grpc.WriteSideHandlerServiceStub | None = None

    def _open(self) -> writeside_pb2_grpc.WriteSideHandlerServiceStub:
        # Created lazily so the channel binds to the event loop that uses it.
        roots = Path(self._ca_file).read_bytes() if self._tls and self._ca_file else None
        self._channel = open_channel(
            self._target, tls=self._tls, root_certificates=roots, settings=self._grpc
        )
        self._stub = writeside_pb2_grpc.WriteSideHandlerServiceStub(self._channel)
        return self._stub

    async def handle_command(
        self, request: writeside_pb2.HandleCommandRequest, call: HandlerCall
    ) -> writeside_pb2.HandleCommandResponse:
        """Ask the handler which events the command produces."""
        return await self._call("HandleCommand", request, call, writeside_pb2.HandleCommandResponse)

    async def handle_event(
        self, request: writeside_pb2.HandleEventRequest, call: HandlerCall
    ) -> writeside_pb2.HandleEventResponse:
        """Ask the handler for the state the event produces."""
        return await self._call("HandleEvent", request, call, writeside_pb2.HandleEventResponse)

    async def _call(
        self,
        method: str,
        request: writeside_pb2.HandleCommandRequest | writeside_pb2.HandleEventRequest,
        call: HandlerCall,
        reply: type[Reply],
    ) -> Reply:
        return await self._breaker.call(lambda: self._call_reconnecting(method, request, call))

    async def _call_reconnecting(
        self,
        method: str,
        request: writeside_pb2.HandleCommandRequest | writeside_pb2.HandleEventRequest,
        call: HandlerCall,
    ) -> Reply:
        # Each call gets COS_GRPC_CALLS_TIMEOUT, or what is left of the command's
        # COS_COMMAND_HANDLER_TIMEOUT when that is less (as in Chief of State), or the
        # breaker's call timeout when that is less still.
        timeout, limit = self._call_timeout, "COS_GRPC_CALLS_TIMEOUT"
        if self._breaker.timeout(timeout) < timeout:
            timeout, limit = self._breaker.timeout(timeout), "COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT"
        if call.budget_end is not None and call.budget_end - time.monotonic() < timeout:
            timeout = max(0.0, call.budget_end - time.monotonic())
            limit = "COS_COMMAND_HANDLER_TIMEOUT"
        try:
            try:
                return await self._send(method, request, call, timeout)
            except grpc.aio.AioRpcError as exc:
                if not not_connected(exc):
                    raise
                # No connection, so the handler never saw the call: the channel may
                # still be backing off from an outage the handler is already over. A
                # new channel connects at once if it is back.
                await self.close()
                left = timeout if call.budget_end is None else call.budget_end - time.monotonic()
                return await self._send(method, request, call, max(0.0, min(timeout, left)))
        except grpc.aio.AioRpcError as exc:
            note = f"{method} within {round(timeout * 1000)} ms ({limit})"
            peer = f"write handler at {self._target}"
            raise call_error(exc, peer, deadline_note=note, method=method) from None

    async def _send(
        self,
        method: str,
        request: writeside_pb2.HandleCommandRequest | writeside_pb2.HandleEventRequest,
        call: HandlerCall,
        timeout: float,
    ) -> Reply:
        stub = self._stub or self._open()
        answer = await getattr(stub, method)(
            request, timeout=timeout, metadata=tuple(call.metadata) or None
        )
        return cast(Reply, answer)  # the stub's reply type for ``method``

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
