"""Client of an application's ``ReadSideHandlerService``: one aio channel per read side."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

import grpc
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from chief_of_state.v1 import persistence_pb2, readside_pb2, readside_pb2_grpc
from cos.breaker import NO_BREAKER, Breaker, BreakerOpenError, BreakerSettings
from cos.readside.config import ReadSideConfig
from cos.readside.runner import Failure
from cos.storage import StoredEvent
from cos.telemetry.instruments import NO_INSTRUMENTS, Instruments, Metadata, span_context_of
from cos.transport import DEFAULT_CHANNELS, ChannelSettings, not_connected, open_channel

# Chief of State's headers on every HandleReadSide call.
ENTITY_ID_HEADER = "x-cos-entity-id"
EVENT_TAG_HEADER = "x-cos-event-tag"
SERVICE = readside_pb2.DESCRIPTOR.services_by_name["ReadSideHandlerService"].full_name


@dataclass(frozen=True)
class ReadCalls:
    """How every read handler is called: the deadline of a read side that sets no
    ``timeout`` (COS_GRPC_CALLS_TIMEOUT, ms), the channels, the circuit breaker."""

    default_timeout_ms: int = 60_000
    channels: ChannelSettings = DEFAULT_CHANNELS
    breaker: BreakerSettings = NO_BREAKER


DEFAULT_READ_CALLS = ReadCalls()


class ReadHandlerClient:
    """Calls ``HandleReadSide`` with the read side's deadline (or the default); TLS when
    configured; behind a circuit breaker when turned on."""

    def __init__(
        self,
        config: ReadSideConfig,
        calls: ReadCalls = DEFAULT_READ_CALLS,
        instruments: Instruments = NO_INSTRUMENTS,
    ) -> None:
        self.read_side_id = config.read_side_id
        self._instruments = instruments
        self._target = f"{config.host}:{config.port}"
        handler = f"read handler {config.read_side_id} at {self._target}"
        self._breaker = Breaker(calls.breaker, handler)
        timeout = (config.timeout_ms or calls.default_timeout_ms) / 1000
        self._timeout = self._breaker.timeout(timeout)
        self._tls = config.use_tls
        self._channels = calls.channels
        self._max_message = calls.channels.max_message
        self._channel: grpc.aio.Channel | None = None
        self._stub: readside_pb2_grpc.ReadSideHandlerServiceStub | None = None

    def _open(self) -> readside_pb2_grpc.ReadSideHandlerServiceStub:
        self._channel = open_channel(self._target, tls=self._tls, settings=self._channels)
        self._stub = readside_pb2_grpc.ReadSideHandlerServiceStub(self._channel)
        return self._stub

    async def deliver(
        self, event: persistence_pb2.EventWrapper, stored: StoredEvent
    ) -> Failure | None:
        """Hand one event to the read handler; None on success, else why it failed. Like
        Chief of State, the call carries the headers ``x-cos-entity-id`` and
        ``x-cos-event-tag`` (the shard number, Chief of State's event tag).

        Traced, the call is a span of its own linked to the command that wrote the event
        (the context stored with it), and the handler is sent the span's context.

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
        )
        instruments = self._instruments
        if instruments.tracer is None and instruments.metrics is None:
            return await self._send(request, headers)
        started = time.perf_counter()
        failure: Failure | None = Failure("the delivery was cancelled")
        try:
            if instruments.tracer is None:
                failure = await self._send(request, headers)
            else:
                span = self._span(stored)
                try:
                    failure = await self._send(request, instruments.inject(headers, span))
                    if failure is not None:
                        span.set_status(Status(StatusCode.ERROR, failure.reason))
                finally:
                    span.end()
            return failure
        finally:
            self._count(failure, (time.perf_counter() - started) * 1000)

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

    def _span(self, stored: StoredEvent) -> Span:
        tracer = self._instruments.tracer
        assert tracer is not None
        written_by = span_context_of(stored.trace_context)
        return tracer.start_span(
            f"{SERVICE}/HandleReadSide",
            context=Context(),  # a trace of its own, linked to the command's
            kind=SpanKind.CLIENT,
            links=[Link(written_by)] if written_by is not None else [],
            attributes={
                "rpc.system": "grpc",
                "rpc.service": SERVICE,
                "rpc.method": "HandleReadSide",
                "cos.read_side_id": self.read_side_id,
                "cos.shard": stored.shard,
                "cos.journal.position": stored.position,
                "cos.entity_id": stored.entity_id,
                "cos.revision": stored.revision,
            },
        )

    def _count(self, failure: Failure | None, milliseconds: float) -> None:
        metrics = self._instruments.metrics
        if metrics is None:
            return
        labels = {"cos.read_side_id": self.read_side_id}
        (metrics.delivered if failure is None else metrics.failed).add(1, labels)
        metrics.client_duration.record(
            milliseconds,
            {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": "HandleReadSide"},
        )

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
