"""Spans and metrics of the calls a node makes, as wrappers around the clients the core is
given: the write handler, the peer hosts (the forward hop) and the read handlers.

    Shard ──> ObservedWriteHandler ──> WriteHandlerClient      HandleCommand, HandleEvent
    ShardHost ──> ObservedPeers ──> PeerClients                cos.forward
    ReadSideRunner ──> ObservedReadHandler ──> ReadHandlerClient   HandleReadSide (linked)

Each wrapper has the interface of what it wraps; the runtime puts it in only when
telemetry is on, so the core knows nothing of it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from chief_of_state.v1 import persistence_pb2, readside_pb2, service_pb2, writeside_pb2
from cos.readside import Failure, ReadHandler
from cos.sharding import Peers, Route
from cos.storage import StoredEvent
from cos.telemetry._inbound import code_of, mark_failed
from cos.telemetry._instruments import Instruments, rpc_attributes, span_context_of
from cos.transport import Metadata
from cos.writeside import CommandRequest, EntityState, HandlerCall, StateRequest, WriteHandler

SERVICE = service_pb2.DESCRIPTOR.services_by_name["ChiefOfStateService"].full_name
HANDLER_SERVICE = writeside_pb2.DESCRIPTOR.services_by_name["WriteSideHandlerService"].full_name
READ_SERVICE = readside_pb2.DESCRIPTOR.services_by_name["ReadSideHandlerService"].full_name

Reply = TypeVar("Reply")
Request = TypeVar("Request", writeside_pb2.HandleCommandRequest, writeside_pb2.HandleEventRequest)
Forwarded = TypeVar("Forwarded", CommandRequest, StateRequest)


class ObservedWriteHandler:
    """A :class:`cos.writeside.handler.WriteHandler` whose calls are client spans (their
    context sent to the handler in place of the caller's) and are timed."""

    def __init__(self, inner: WriteHandler, *, instruments: Instruments, target: str) -> None:
        self._inner = inner
        self._instruments = instruments
        host, _, port = target.rpartition(":")
        self._address, self._port = host, int(port) if port.isdigit() else 0

    async def handle_command(
        self, request: writeside_pb2.HandleCommandRequest, call: HandlerCall
    ) -> writeside_pb2.HandleCommandResponse:
        """``HandleCommand``, observed."""
        revision = request.prior_event_meta.revision_number
        return await self._call(
            "HandleCommand", call, revision, self._inner.handle_command, request
        )

    async def handle_event(
        self, request: writeside_pb2.HandleEventRequest, call: HandlerCall
    ) -> writeside_pb2.HandleEventResponse:
        """``HandleEvent``, observed."""
        revision = request.event_meta.revision_number
        return await self._call("HandleEvent", call, revision, self._inner.handle_event, request)

    async def _call(
        self,
        method: str,
        call: HandlerCall,
        revision: int,
        send: Callable[[Request, HandlerCall], Awaitable[Reply]],
        request: Request,
    ) -> Reply:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        instruments = self._instruments
        span = instruments.child(
            f"{HANDLER_SERVICE}/{method}",
            SpanKind.CLIENT,
            rpc_attributes(
                HANDLER_SERVICE,
                method,
                {
                    "server.address": self._address,
                    "server.port": self._port,
                    "cos.revision": revision,
                },
            ),
        )
        try:
            if span is not None:
                # The handler gets this call's context, not the caller's. (Unsampled, the
                # request's headers already carry the unsampled context.)
                call = HandlerCall(instruments.inject(call.metadata, span), call.budget_end)
            return await send(request, call)
        except BaseException as exc:
            code = code_of(exc)
            if span is not None:
                mark_failed(span, code, exc)
            raise
        finally:
            if span is not None:
                span.end()
            if instruments.metrics is not None:
                instruments.metrics.client_duration.record(
                    (time.perf_counter() - started) * 1000,
                    rpc_attributes(
                        HANDLER_SERVICE, method, {"rpc.grpc.status_code": code.value[0]}
                    ),
                )


class ObservedPeers:
    """The forward hop (:class:`cos.sharding.host.Peers`), counted, and traced as a client
    span whose context the owner continues."""

    def __init__(self, inner: Peers, *, instruments: Instruments) -> None:
        self._inner = inner
        self._instruments = instruments

    async def forward_command(
        self, route: Route, request: CommandRequest, timeout: float
    ) -> EntityState:
        """``ProcessCommand`` on the owner, observed."""
        return await self._forward("ProcessCommand", route, request, timeout)

    async def forward_state(
        self, route: Route, request: StateRequest, timeout: float
    ) -> EntityState:
        """``GetState`` on the owner, observed."""
        return await self._forward("GetState", route, request, timeout)

    async def _forward(
        self, method: str, route: Route, request: Forwarded, timeout: float
    ) -> EntityState:
        instruments = self._instruments
        if instruments.metrics is not None:
            instruments.metrics.forwarded.add(1, {"rpc.method": method})
        span = instruments.child(
            f"cos.forward {method}",
            SpanKind.CLIENT,
            rpc_attributes(
                SERVICE,
                method,
                {"server.address": route.address, "cos.owner_host": route.host_id},
            ),
        )
        if span is None:
            return await self._send(method, route, request, timeout)
        try:
            # The owner continues this span.
            request = dataclasses.replace(
                request, metadata=instruments.inject(request.metadata, span)
            )
            return await self._send(method, route, request, timeout)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()

    async def _send(
        self, method: str, route: Route, request: Forwarded, timeout: float
    ) -> EntityState:
        if isinstance(request, CommandRequest):
            return await self._inner.forward_command(route, request, timeout)
        return await self._inner.forward_state(route, request, timeout)


class ObservedReadHandler:
    """A read side's handler (:class:`cos.readside.client.ReadHandler`) whose deliveries
    are counted and timed, and traced as client spans of their own, linked to the command
    that wrote the event (the context stored with it); the handler is sent the span's
    context."""

    def __init__(self, inner: ReadHandler, *, instruments: Instruments) -> None:
        self._inner = inner
        self._instruments = instruments
        self.read_side_id = inner.read_side_id

    async def deliver(
        self, event: persistence_pb2.EventWrapper, stored: StoredEvent, metadata: Metadata = ()
    ) -> Failure | None:
        """``HandleReadSide``, observed."""
        started = time.perf_counter()
        failure: Failure | None = Failure("the delivery was cancelled")
        try:
            if self._instruments.tracer is None:
                failure = await self._inner.deliver(event, stored, metadata)
                return failure
            span = self._span(stored)
            try:
                failure = await self._inner.deliver(
                    event, stored, self._instruments.inject(metadata, span)
                )
                if failure is not None:
                    span.set_status(Status(StatusCode.ERROR, failure.reason))
            finally:
                span.end()
            return failure
        finally:
            self._count(failure, (time.perf_counter() - started) * 1000)

    def _span(self, stored: StoredEvent) -> Span:
        tracer = self._instruments.tracer
        assert tracer is not None
        written_by = span_context_of(stored.trace_context)
        return tracer.start_span(
            f"{READ_SERVICE}/HandleReadSide",
            context=Context(),  # a trace of its own, linked to the command's
            kind=SpanKind.CLIENT,
            links=[Link(written_by)] if written_by is not None else [],
            attributes=rpc_attributes(
                READ_SERVICE,
                "HandleReadSide",
                {
                    "cos.read_side_id": self.read_side_id,
                    "cos.shard": stored.shard,
                    "cos.journal.position": stored.position,
                    "cos.entity_id": stored.entity_id,
                    "cos.revision": stored.revision,
                },
            ),
        )

    def _count(self, failure: Failure | None, milliseconds: float) -> None:
        metrics = self._instruments.metrics
        if metrics is None:
            return
        labels = {"cos.read_side_id": self.read_side_id}
        (metrics.delivered if failure is None else metrics.failed).add(1, labels)
        metrics.client_duration.record(milliseconds, rpc_attributes(READ_SERVICE, "HandleReadSide"))

    async def close(self) -> None:
        """Close the handler's connection."""
        await self._inner.close()
