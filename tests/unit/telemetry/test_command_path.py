"""The telemetry interceptor and handler wrapper with an in-memory exporter: which spans a
command makes, sampled and not, and the context each handler call is sent."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from chief_of_state.v1 import writeside_pb2
from cos.errors import HandlerCallError
from cos.telemetry import Instruments
from cos.telemetry._inbound import TelemetryInterceptor
from cos.telemetry._outbound import ObservedWriteHandler
from cos.telemetry._setup import _propagator
from cos.writeside import CommandRequest, EntityState, HandlerCall
from cos.writeside._entity import initial_state

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class FakeHandler:
    """Records the headers of each call; fails HandleCommand when told to."""

    def __init__(self, fail: str | None = None) -> None:
        self.sent: list[dict[str, str | bytes]] = []
        self._fail = fail

    async def handle_command(
        self, request: writeside_pb2.HandleCommandRequest, call: HandlerCall
    ) -> writeside_pb2.HandleCommandResponse:
        self.sent.append(dict(call.metadata))
        if self._fail:
            raise HandlerCallError(self._fail, "refused", b"")
        return writeside_pb2.HandleCommandResponse()

    async def handle_event(
        self, request: writeside_pb2.HandleEventRequest, call: HandlerCall
    ) -> writeside_pb2.HandleEventResponse:
        self.sent.append(dict(call.metadata))
        return writeside_pb2.HandleEventResponse()


class FakeRouter:
    """Calls the handler the way a shard does: the request's headers, then an event."""

    def __init__(self, handler: ObservedWriteHandler) -> None:
        self.handler = handler

    async def process_command(self, request: CommandRequest) -> EntityState:
        call = HandlerCall(tuple(request.metadata), None)
        await self.handler.handle_command(writeside_pb2.HandleCommandRequest(), call)
        await self.handler.handle_event(writeside_pb2.HandleEventRequest(), call)
        return initial_state(request.entity_id)


def chain(
    handler: FakeHandler, sampler: object = None
) -> tuple[TelemetryInterceptor, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    propagator = _propagator(("tracecontext", "baggage"))
    instruments = Instruments(
        tracer=provider.get_tracer("cos"),
        propagator=propagator,
        headers=frozenset(propagator.fields),
    )
    observed = ObservedWriteHandler(handler, instruments=instruments, target="handler:50051")
    interceptor = TelemetryInterceptor(
        FakeRouter(observed), instruments=instruments, num_shards=4, owner=lambda s: "host-a"
    )
    return interceptor, spans


def request(traceparent: str) -> CommandRequest:
    return CommandRequest("acct-1", any_pb2.Any(), (("traceparent", traceparent), ("x", "1")))


async def test_a_sampled_command_nests_its_spans_and_sends_each_call_its_own_context() -> None:
    handler = FakeHandler()
    interceptor, exporter = chain(handler)
    await interceptor.process_command(request(CALLER))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server = spans["chief_of_state.v1.ChiefOfStateService/ProcessCommand"]
    route = spans["cos.route"]
    command = spans["chief_of_state.v1.WriteSideHandlerService/HandleCommand"]
    assert format(server.context.trace_id, "032x") == CALLER.split("-")[1]
    assert server.parent is not None and format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert route.parent is not None and route.parent.span_id == server.context.span_id
    assert command.parent is not None and command.parent.span_id == route.context.span_id
    assert dict(command.attributes or {})["server.address"] == "handler"
    # HandleCommand was sent its own span's context, in place of the caller's.
    sent = handler.sent[0]
    assert sent["traceparent"] == f"00-{CALLER.split('-')[1]}-{command.context.span_id:016x}-01"
    assert sent["x"] == "1"


async def test_an_unsampled_command_makes_no_span_but_passes_the_decision_on() -> None:
    handler = FakeHandler()
    interceptor, exporter = chain(handler, ParentBased(ALWAYS_OFF))
    bare = CommandRequest("acct-1", any_pb2.Any(), (("x", "1"),))  # no context of its own
    await interceptor.process_command(bare)
    assert exporter.get_finished_spans() == ()
    # Every handler call learns the trace is not sampled (flag bit 0 clear), in one trace.
    parts = [str(sent["traceparent"]).split("-") for sent in handler.sent]
    assert len(parts) == 2 and {p[1] for p in parts} == {parts[0][1]} != {"0" * 32}
    assert {p[0] for p in parts} == {"00"}
    assert not any(int(p[3], 16) & 1 for p in parts)


async def test_a_handler_error_marks_the_client_and_server_spans() -> None:
    interceptor, exporter = chain(FakeHandler(fail="FAILED_PRECONDITION"))
    with pytest.raises(HandlerCallError):
        await interceptor.process_command(request(CALLER))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in (
        "chief_of_state.v1.WriteSideHandlerService/HandleCommand",
        "chief_of_state.v1.ChiefOfStateService/ProcessCommand",
    ):
        span = spans[name]
        assert not span.status.is_ok
        assert span.status.description == "FAILED_PRECONDITION: refused"
        code = grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert dict(span.attributes or {})["rpc.grpc.status_code"] == code
