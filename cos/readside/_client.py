"""Client of an application's ``ReadSideHandlerService``: one aio channel per read side."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

import grpc

from chief_of_state.v1 import persistence_pb2, readside_pb2, readside_pb2_grpc
from cos.breaker import NO_BREAKER, Breaker, BreakerOpenError, BreakerSettings
from cos.readside._config import ReadSideConfig
from cos.readside._runner import Failure
from cos.storage import StoredEvent
from cos.transport import DEFAULT_GRPC, GrpcSettings, Metadata, not_connected, open_channel

# Chief of State's headers on every HandleReadSide call.
ENTITY_ID_HEADER = "x-cos-entity-id"
EVENT_TAG_HEADER = "x-cos-event-tag"


class ReadHandler(Protocol):
    """A read side's handler, as its runners call it."""

    read_side_id: str

    async def deliver(
        self, event: persistence_pb2.EventWrapper, stored: StoredEvent, metadata: Metadata = ()
    ) -> Failure | None:
        """Hand one event to the handler, with ``metadata`` besides Chief of State's own
        headers; None on success, else why it failed."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


class ReadHandlerClient:
    """Calls ``HandleReadSide`` with the read side's deadline (or the default); TLS when
    configured; behind a circuit breaker when turned on."""

    def __init__(
        self,
        config: ReadSideConfig,
        *,
        grpc_settings: GrpcSettings = DEFAULT_GRPC,
        breaker: BreakerSettings = NO_BREAKER,
    ) -> None:
        self.read_side_id = config.read_side_id
        self._target = f"{config.host}:{config.port}"
        handler = f"read handler {config.read_side_id} at {self._target}"
        self._breaker = Breaker(breaker, handler)
        timeout = (config.timeout_ms or grpc_settings.call_timeout_ms) / 1000
        self._timeout = self._breaker.timeout(timeout)
        self._tls = config.use_tls
        self._grpc = grpc_settings
        self._max_message = grpc_settings.max_message_bytes
        self._channel: grpc.aio.Channel | None = None
        self._stub: readside_pb2_grpc.ReadSideHandlerServiceStub | None = None

    def _open(self) -> readside_pb2_grpc.ReadSideHandlerServiceStub:
        self._channel = open_channel(self._target, tls=self._tls, settings=self._grpc)
        self._stub = readside_pb2_grpc.ReadSideHandlerServiceStub(self._channel)
        return self._stub

    async def deliver(
        self, event: persistence_pb2.EventWrapper, stored: StoredEvent, metadata: Metadata = ()
    ) -> Failure | None:
        """Hand one event to the read handler; None on success, else why it failed. Like
        Chief of State, the call carries the headers ``x-cos-entity-id`` and
        ``x-cos-event-tag`` (the shard number, Chief of State's event tag).

        ``metadata`` goes with them (the trace context, when telemetry observes the call).

        An event too large to send (COS_MAX_MESSAGE_BYTES) is a permanent failure: no
        retry can deliver it.

        When the call finds no connection, the channel may still be backing off from
        an outage the handler is already over: the event is tried once more on a new
        channel, which connects at once if the handler is back, before it counts as
        failed. (Delivery is at least once, so the second try is always safe.)
        """
        request = readside_pb2.HandleReadSideRequest(
            event=event.event,
            state=event.resulting_state,
            meta=event.meta,
            read_side_id=self.read_side_id,
        )
        size = request.ByteSize()
        if size > self._max_message:
            return Failure(
                f"the event with its state is {size} bytes, larger than the largest message"
                f" ({self._max_message} bytes, COS_MAX_MESSAGE_BYTES): it can never be delivered",
                permanent=True,
            )
        headers = (
            (ENTITY_ID_HEADER, _ascii(event.meta.entity_id)),
            (EVENT_TAG_HEADER, str(stored.shard)),
            *metadata,
        )
        return await self._send(request, headers)

    async def _send(
        self, request: readside_pb2.HandleReadSideRequest, headers: Metadata
    ) -> Failure | None:
        try:
            reply = await self._breaker.call(lambda: self._call_reconnecting(request, headers))
        except grpc.aio.AioRpcError as exc:
            return Failure(_reason(exc))
        except BreakerOpenError as exc:
            return Failure(str(exc))
        return None if reply.successful else Failure("handler answered successful=false")

    async def _call_reconnecting(
        self, request: readside_pb2.HandleReadSideRequest, headers: Metadata
    ) -> readside_pb2.HandleReadSideResponse:
        try:
            return await self._call(request, headers)
        except grpc.aio.AioRpcError as exc:
            if not not_connected(exc):
                raise
        await self.close()
        return await self._call(request, headers)

    async def _call(
        self, request: readside_pb2.HandleReadSideRequest, headers: Metadata
    ) -> readside_pb2.HandleReadSideResponse:
        stub = self._stub or self._open()
        reply: readside_pb2.HandleReadSideResponse = await stub.HandleReadSide(
            request, timeout=self._timeout, metadata=headers
        )
        return reply

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None


def _ascii(value: str) -> str:
    """A metadata value must be printable ASCII: other entity ids go percent-encoded."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="")


def _reason(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details()}"
