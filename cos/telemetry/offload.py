"""Span export in a process of its own.

Encoding spans as OTLP protobuf is Python code that costs more than making the spans
(about 30 µs a span here), and done by the SDK's batch thread it holds the GIL the node's
event loop needs. So the node's batch processor hands each batch, as plain tuples, to a
child process over a pipe; the child rebuilds the spans and exports them with the standard
OTLP exporter, configured by the same ``OTEL_*`` environment.

    node: spans ──> BatchSpanProcessor ──> PipeSpanExporter ──pickle──> pipe
    child (python -m cos.telemetry.offload): pipe ──> spans ──> OTLPSpanExporter ──> collector

The child exits when the pipe closes (the node stopped or died).
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any, BinaryIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
_Context = tuple[int, int, int]  # trace id, span id, flags


def _context(context: SpanContext | None) -> _Context | None:
    if context is None:
        return None
    return (context.trace_id, context.span_id, int(context.trace_flags))


def record(span: ReadableSpan) -> tuple[Any, ...]:
    """What the child needs of a finished span, as plain values (cheap to pickle)."""
    status = span.status
    scope = span.instrumentation_scope
    return (
        span.name,
        _context(span.context),
        _context(span.parent),
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes or {}),
        status.status_code.value,
        status.description,
        tuple((_context(link.context), dict(link.attributes or {})) for link in span.links),
        scope.name if scope else "",
    )


def rebuild(values: tuple[Any, ...], resource: Resource) -> ReadableSpan:
    """The span :func:`record` was made from, for an exporter."""
    name, context, parent, kind, start, end, attributes, code, text, links, scope = values
    return ReadableSpan(
        name=name,
        context=_span_context(context),
        parent=_span_context(parent, remote=True) if parent else None,
        resource=resource,
        attributes=attributes,
        links=[Link(_span_context(c, remote=True), a) for c, a in links],
        kind=SpanKind(kind),
        status=Status(StatusCode(code), text),
        start_time=start,
        end_time=end,
        instrumentation_scope=InstrumentationScope(scope),
    )


def _span_context(values: _Context, remote: bool = False) -> SpanContext:
    trace_id, span_id, flags = values
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(flags))


def _write(stream: IO[bytes], payload: object) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    return pickle.loads(stream.read(_HEADER.unpack(header)[0]))


class PipeSpanExporter(SpanExporter):
    """A :class:`SpanExporter` that hands spans to the export process (started here)."""

    def __init__(self, resource: Resource, protocol: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._child = subprocess.Popen(
            [sys.executable, "-m", "cos.telemetry.offload", protocol],
            stdin=subprocess.PIPE,
            env=env,
        )
        self._lock = threading.Lock()
        self._broken = False
        assert self._child.stdin is not None
        self._pipe: IO[bytes] = self._child.stdin
        _write(self._pipe, dict(resource.attributes))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send ``spans`` to the child; FAILURE once it is gone (then spans are dropped)."""
        if self._broken:
            return SpanExportResult.FAILURE
        try:
            with self._lock:
                _write(self._pipe, [record(span) for span in spans])
        except (BrokenPipeError, OSError, ValueError) as exc:
            self._broken = True
            log.error("the span export process is gone (%r): spans are dropped from now", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the pipe: the child exports what it has and exits."""
        with self._lock:
            if not self._pipe.closed:
                self._pipe.close()
        try:
            self._child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._child.kill()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Everything given to :meth:`export` is in the pipe already."""
        return True


def otlp_exporter(protocol: str) -> SpanExporter:
    """The standard OTLP span exporter of ``protocol``, configured by ``OTEL_*``."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()


def main(protocol: str, stream: BinaryIO) -> None:
    """The child: rebuild and export every batch until the pipe closes."""
    resource = Resource(_read(stream))
    exporter = otlp_exporter(protocol)
    try:
        while True:
            try:
                batch = _read(stream)
            except EOFError:
                return
            exporter.export([rebuild(values, resource) for values in batch])
    finally:
        exporter.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(sys.argv[1], sys.stdin.buffer)
