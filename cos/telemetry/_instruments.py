"""The instruments of a node: its tracer, its metric instruments and the propagator.

Everything here uses the OpenTelemetry API only. The interceptor and the wrappers of this
package take an :class:`Instruments`; the runtime puts them in only when telemetry is on,
so with telemetry off the command path pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    format_span_id,
    format_trace_id,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from cos.telemetry._metrics import Metrics
from cos.transport import Metadata


def rpc_attributes(
    service: str, method: str, more: Mapping[str, AttributeValue] | None = None
) -> dict[str, AttributeValue]:
    """The OpenTelemetry ``rpc.*`` attributes of a gRPC call, and ``more``."""
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method, **(more or {})}


@dataclass(frozen=True)
class Instruments:
    """What a node records with; ``tracer``/``metrics`` are None when that is off."""

    tracer: Tracer | None = None
    metrics: Metrics | None = None
    propagator: TextMapPropagator | None = None
    headers: frozenset[str] = field(default_factory=frozenset)  # the propagator's fields

    def extract(self, metadata: Metadata) -> Context | None:
        """The caller's trace context from request headers."""
        if self.propagator is None:
            return None
        return self.propagator.extract(dict(_text(metadata)), getter=_GETTER)

    def child(
        self, name: str, kind: SpanKind, attributes: Mapping[str, AttributeValue]
    ) -> Span | None:
        """A span under the current one, not made current (nothing below it needs it
        current, and attaching costs as much as the span): end it with ``span.end()``.
        None when tracing is off, or when the trace is not sampled, so an unsampled
        command makes one span, its server span, whatever the sampling ratio."""
        if self.tracer is None or not get_current_span().is_recording():
            return None
        return self.tracer.start_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def inject(
        self, metadata: Metadata, span: Span | None = None
    ) -> tuple[tuple[str, str | bytes], ...]:
        """``metadata`` with the context of ``span`` (default: the current span) in place
        of any it carried."""
        carrier: dict[str, str] = {}
        if self.propagator is not None:
            context = None if span is None else set_span_in_context(span)
            self.propagator.inject(carrier, context=context, setter=_SETTER)
        if not carrier:  # no span here: whatever context the headers carry goes on
            return tuple(metadata)
        kept = tuple((k, v) for k, v in metadata if k not in carrier and k not in self.headers)
        return (*kept, *carrier.items())


NO_INSTRUMENTS = Instruments()


def traceparent(span: Span | None = None) -> str | None:
    """The W3C ``traceparent`` of ``span`` (default: the current span), what the journal
    stores with its events."""
    context = (span or get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    flags = int(context.trace_flags)
    return f"00-{format_trace_id(context.trace_id)}-{format_span_id(context.span_id)}-{flags:02x}"


def span_context_of(value: str | None) -> SpanContext | None:
    """The span context a stored ``traceparent`` names; None for none or a malformed one."""
    parts = (value or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return context if context.is_valid else None


def _text(metadata: Metadata) -> Iterable[tuple[str, str]]:
    for key, value in metadata:
        if isinstance(value, str):
            yield key, value


class _DictGetter(Getter[dict[str, str]]):
    def get(self, carrier: dict[str, str], key: str) -> list[str] | None:
        value = carrier.get(key.lower())
        return None if value is None else [value]

    def keys(self, carrier: dict[str, str]) -> list[str]:
        return list(carrier)


class _DictSetter(Setter[dict[str, str]]):
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[key.lower()] = value  # gRPC metadata keys are lower case


_GETTER = _DictGetter()
_SETTER = _DictSetter()
