"""Span export in a child process: spans survive the trip as plain values, and a child
that is gone makes export fail instead of blocking the node."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from cos.telemetry.offload import PipeSpanExporter, rebuild, record


def finished_spans() -> list:  # type: ignore[type-arg]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("cos")
    with tracer.start_as_current_span("parent") as parent:
        child = tracer.start_span(
            "child",
            kind=SpanKind.CLIENT,
            attributes={"cos.shard": 3, "rpc.method": "HandleEvent", "cos.forwarded": False},
            links=[Link(parent.get_span_context(), {"why": "test"})],
        )
        child.set_status(Status(StatusCode.ERROR, "INTERNAL: broken"))
        child.end()
    return list(memory.get_finished_spans())


def test_a_span_rebuilt_from_its_record_is_the_same_span() -> None:
    resource = Resource({"service.name": "bank"})
    for span in finished_spans():
        again = rebuild(record(span), resource)
        assert (again.name, again.kind, again.start_time, again.end_time) == (
            span.name,
            span.kind,
            span.start_time,
            span.end_time,
        )
        assert again.context.trace_id == span.context.trace_id
        assert again.context.span_id == span.context.span_id
        assert (again.parent and again.parent.span_id) == (span.parent and span.parent.span_id)
        assert dict(again.attributes or {}) == dict(span.attributes or {})
        assert (again.status.status_code, again.status.description) == (
            span.status.status_code,
            span.status.description,
        )
        assert [(k.context.span_id, dict(k.attributes or {})) for k in again.links] == [
            (k.context.span_id, dict(k.attributes or {})) for k in span.links
        ]
        assert again.resource.attributes["service.name"] == "bank"


def test_export_fails_once_the_child_is_gone(caplog: pytest.LogCaptureFixture) -> None:
    exporter = PipeSpanExporter(Resource({}), "grpc")
    exporter._child.kill()
    exporter._child.wait()
    spans = finished_spans() * 2000  # more than a pipe buffer: the write must notice
    with caplog.at_level(logging.ERROR):
        assert exporter.export(spans) is SpanExportResult.FAILURE
        assert exporter.export(spans) is SpanExportResult.FAILURE
    assert "span export process is gone" in caplog.text
    exporter.shutdown()
