"""A write handler for tests, run in its own process: ``python tests/handlers/writer.py``.

Commands, events and states are ``google.protobuf.Struct`` so tests need no
protos of their own. A command says what to do:

- ``{"add": [1, 2, 3]}``: one event per number; ``{"repeat": n}`` n events of 1
- ``{}`` or ``{"add": []}``: no event (a no-op)
- ``{"sleep": 2.0}``: answer after that many seconds
- ``{"fail": "FAILED_PRECONDITION", "message": "..."}``: raise that status with a
  rich ``google.rpc.Status`` detail (``ErrorInfo(reason="TEST_FAILURE")``)
- ``{"event_fail_at": 2}``: HandleEvent of the 2nd event raises INTERNAL
- ``{"no_state_at": 1}``: HandleEvent of the 1st event returns no state
- ``{"legacy": true}``: put the single event in the deprecated ``event`` field
- ``{"poison": true}``: mark the events so the test read handler fails on them
- ``{"type_url": "..."}``: give the events this type URL (their value stays a Struct)
- ``{"state_bytes": n}``: pad the resulting state with a string of n bytes
- ``{"event_bytes": n}``: pad each event with a string of n bytes

Each event records what HandleCommand saw (prior revision, prior state type,
request headers). HandleEvent refuses an event whose revision is not the prior
state's revision + 1, so a skipped or repeated revision fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from google.protobuf import any_pb2, struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from chief_of_state.v1 import writeside_pb2, writeside_pb2_grpc
from tests.handlers.serving import serve_until_signalled

_SEEN_HEADERS = ("x-propagated", "x-persisted", "x-other", "traceparent", "b3")


def _struct(value: any_pb2.Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    if value.Is(struct_pb2.Struct.DESCRIPTOR):
        value.Unpack(result)
    return result


def _pack(message: struct_pb2.Struct) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


async def _fail(context: grpc.aio.ServicerContext, code_name: str, message: str) -> None:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="TEST_FAILURE", domain="tests"))
    status = status_pb2.Status(code=getattr(code_pb2, code_name), message=message, details=[detail])
    await context.abort_with_status(rpc_status.to_status(status))


class TestWriteHandler(writeside_pb2_grpc.WriteSideHandlerServiceServicer):
    def __init__(self, tracer=None) -> None:
        self._tracer = tracer

    async def HandleCommand(self, request, context):
        if self._tracer is None:
            return await self._handle_command(request, context)
        # The handler's own span, joining the runtime's trace through the W3C headers.
        metadata = {m.key: m.value for m in context.invocation_metadata() or ()}
        parent = TraceContextTextMapPropagator().extract(metadata)
        with self._tracer.start_as_current_span("test-writer.HandleCommand", context=parent):
            return await self._handle_command(request, context)

    async def _handle_command(self, request, context):
        command = _struct(request.command)
        fields = command.fields
        if "sleep" in fields:
            await asyncio.sleep(fields["sleep"].number_value)
        if "fail" in fields:
            await _fail(context, fields["fail"].string_value, fields["message"].string_value)
        adds = [v.number_value for v in fields["add"].list_value.values] if "add" in fields else []
        adds += [1.0] * int(fields["repeat"].number_value) if "repeat" in fields else []
        metadata = {m.key: m.value for m in context.invocation_metadata() or ()}
        events = []
        for index, amount in enumerate(adds, start=1):
            event = struct_pb2.Struct()
            event.update(
                {
                    "amount": amount,
                    "index": index,
                    "prior_revision": request.prior_event_meta.revision_number,
                    "prior_entity_id": request.prior_event_meta.entity_id,
                    "prior_state_type": request.prior_state.type_url,
                    "headers": {k: v for k, v in metadata.items() if k in _SEEN_HEADERS},
                    "event_fail": index == fields["event_fail_at"].number_value
                    if "event_fail_at" in fields
                    else False,
                    "no_state": index == fields["no_state_at"].number_value
                    if "no_state_at" in fields
                    else False,
                    "poison": fields["poison"].bool_value if "poison" in fields else False,
                    "state_bytes": fields["state_bytes"].number_value
                    if "state_bytes" in fields
                    else 0,
                }
            )
            if "event_bytes" in fields:
                event.update({"padding": "x" * int(fields["event_bytes"].number_value)})
            packed = _pack(event)
            if "type_url" in fields:
                packed.type_url = fields["type_url"].string_value
            events.append(packed)
        if fields["legacy"].bool_value and events:
            return writeside_pb2.HandleCommandResponse(event=events[0])
        # An empty Any among the events must be ignored by the runtime.
        return writeside_pb2.HandleCommandResponse(
            events=[*events, any_pb2.Any()] if events else []
        )

    async def HandleEvent(self, request, context):
        event = _struct(request.event).fields
        prior = _struct(request.prior_state)
        revision = request.event_meta.revision_number
        last = (
            int(prior.fields["last_revision"].number_value)
            if "last_revision" in prior.fields
            else 0
        )
        if revision != last + 1:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"revision {revision} after {last}"
            )
        if event["event_fail"].bool_value:
            await context.abort(grpc.StatusCode.INTERNAL, "event handler failed on purpose")
        if event["no_state"].bool_value:
            return writeside_pb2.HandleEventResponse()
        state = struct_pb2.Struct()
        state.CopyFrom(prior)
        state.update(
            {
                "total": prior.fields["total"].number_value + event["amount"].number_value,
                "last_revision": revision,
                "entity_id": request.event_meta.entity_id,
                "first_prior_state_type": prior.fields["first_prior_state_type"].string_value
                if "first_prior_state_type" in prior.fields
                else event["prior_state_type"].string_value,
                "last_headers": event["headers"].struct_value,
            }
        )
        if event["state_bytes"].number_value:
            state.update({"padding": "x" * int(event["state_bytes"].number_value)})
        return writeside_pb2.HandleEventResponse(resulting_state=_pack(state))


def _tracer(endpoint: str | None):
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "test-writer"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint, insecure=True)))
    return provider.get_tracer("tests.handlers.writer")


async def serve(
    host: str, port: int, cert: str | None, key: str | None, otlp: str | None = None
) -> None:
    server = grpc.aio.server()
    writeside_pb2_grpc.add_WriteSideHandlerServiceServicer_to_server(
        TestWriteHandler(_tracer(otlp)), server
    )
    if cert and key:
        with open(cert, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    await serve_until_signalled(server, f"test write handler listening on {host}:{bound}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", help="PEM certificate: serve TLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--otlp", help="OTLP/gRPC endpoint: trace HandleCommand there")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.tls_cert, args.tls_key, args.otlp))
