"""Spans and metrics of the calls a node answers: the outermost interceptor of the chain
every protocol calls.

    client ──> [TelemetryInterceptor: server span, cos.route] ──> ShardHost ──> Shard

The calls a node makes are observed by the wrappers of ``cos.telemetry.outbound``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    set_span_in_context,
)

from chief_of_state.v1 import service_pb2
from cos.errors import CosError
from cos.sharding import shard_of
from cos.status import status_of
from cos.telemetry._instruments import Instruments, rpc_attributes
from cos.writeside import (
    CommandHandler,
    CommandInterceptor,
    CommandRequest,
    EntityState,
    StateRequest,
)

SERVICE = service_pb2.DESCRIPTOR.services_by_name["ChiefOfStateService"].full_name

Owner = Callable[[int], "str | None"]
Call = TypeVar("Call", CommandRequest, StateRequest)


def code_of(error: BaseException) -> grpc.StatusCode:
    """The status a call that raised ``error`` is answered with."""
    if isinstance(error, CosError):
        return status_of(error)[0]
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.INTERNAL


def mark_failed(span: Span, code: grpc.StatusCode, error: BaseException) -> None:
    """The span of a failed call: its gRPC code, and status ERROR with the message."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    span.set_status(Status(StatusCode.ERROR, f"{code.name}: {error}"))


class TelemetryInterceptor(CommandInterceptor):
    """The server span of ``ProcessCommand``/``GetState`` (continuing the caller's trace
    context), the routing span under it, and the command metrics."""

    def __init__(
        self, next: CommandHandler, *, instruments: Instruments, num_shards: int, owner: Owner
    ) -> None:
        super().__init__(next)
        self._instruments = instruments
        self._num_shards = num_shards
        self._owner = owner

    async def process_command(self, request: CommandRequest) -> EntityState:
        """Run the command inside its spans, and count it."""
        return await self._observe("ProcessCommand", request, self.next.process_command)

    async def get_state(self, request: StateRequest) -> EntityState:
        """Read the state inside its spans, and count it."""
        return await self._observe("GetState", request, self.next.get_state)

    async def _observe(
        self,
        method: str,
        request: Call,
        call: Callable[[Call], Awaitable[EntityState]],
    ) -> EntityState:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if self._instruments.tracer is None:
                return await call(request)
            return await self._traced(method, request, call)
        except BaseException as exc:
            code = code_of(exc)
            raise
        finally:
            self._count(method, request, code, started)

    async def _traced(
        self,
        method: str,
        request: Call,
        call: Callable[[Call], Awaitable[EntityState]],
    ) -> EntityState:
        tracer = self._instruments.tracer
        assert tracer is not None  # checked by the caller
        server = tracer.start_span(
            f"{SERVICE}/{method}",
            context=self._instruments.extract(request.metadata),
            kind=SpanKind.SERVER,
            attributes=rpc_attributes(
                SERVICE,
                method,
                {"cos.entity_id": request.entity_id, "cos.forwarded": request.forwarded},
            ),
            record_exception=False,
            set_status_on_exception=False,
        )
        try:
            if not server.is_recording():
                # Not sampled: no other span, and no current one. The unsampled context
                # still travels on, in the request's headers (to the handler, to the owner).
                headers = self._instruments.inject(request.metadata, server)
                return await call(dataclasses.replace(request, metadata=headers))
            result = await self._routed(tracer, server, request, call)
            server.set_attributes({"rpc.grpc.status_code": 0, "cos.revision": result.revision})
            return result
        except BaseException as exc:
            mark_failed(server, code_of(exc), exc)
            raise
        finally:
            server.end()

    async def _routed(
        self,
        tracer: Tracer,
        server: Span,
        request: Call,
        call: Callable[[Call], Awaitable[EntityState]],
    ) -> EntityState:
        shard = shard_of(request.entity_id, self._num_shards)
        # The one span made current: the handler calls, the journal append and the
        # forward hop below it find their parent through the context.
        with tracer.start_as_current_span(
            "cos.route",
            context=set_span_in_context(server),
            attributes={"cos.shard": shard, "cos.owner_host": self._owner(shard) or ""},
            record_exception=False,
            set_status_on_exception=False,
        ):
            return await call(request)

    def _count(
        self,
        method: str,
        request: CommandRequest | StateRequest,
        code: grpc.StatusCode,
        started: float,
    ) -> None:
        metrics = self._instruments.metrics
        if metrics is None:
            return
        labels = rpc_attributes(SERVICE, method, {"rpc.grpc.status_code": code.value[0]})
        metrics.server_duration.record((time.perf_counter() - started) * 1000, labels)
        # A forwarded call is counted by the node its client called, not again here.
        if isinstance(request, CommandRequest) and not request.forwarded:
            outcome = "ok" if code is grpc.StatusCode.OK else "error"
            metrics.commands.add(1, {"cos.outcome": outcome, "rpc.grpc.status_code": code.value[0]})
