"""The instruments of a node: its tracer, its metric instruments and the propagator.

Everything here uses the OpenTelemetry API only. A part of the command path that
records something takes an :class:`Instruments` (or ``None``) through its constructor
and checks ``tracer``/``metrics`` before doing any work, so with telemetry off the
command path pays one attribute test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
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

Metadata = Sequence[tuple[str, str | bytes]]

# Histogram buckets: milliseconds for latencies, counts for batch sizes.
_MS_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class LagSample:
    """How far one read side is behind in one shard this node serves."""

    read_side_id: str
    shard: int
    events: int
    seconds: float


class Metrics:
    """The runtime's metric instruments (``docs/observability.md`` lists each)."""

    def __init__(self, meter: Meter) -> None:
        self.server_duration = meter.create_histogram(
            "rpc.server.duration",
            unit="ms",
            description="time to answer a ProcessCommand or GetState call",
            explicit_bucket_boundaries_advisory=_MS_BUCKETS,
        )
        self.client_duration = meter.create_histogram(
            "rpc.client.duration",
            unit="ms",
            description="time of a call to a write or read handler, by RPC",
            explicit_bucket_boundaries_advisory=_MS_BUCKETS,
        )
        self.commands = meter.create_counter(
            "cos.commands",
            unit="{command}",
            description="commands answered to clients, by outcome and gRPC status code",
        )
        self.forwarded = meter.create_counter(
            "cos.commands.forwarded",
            unit="{command}",
            description="commands and state reads sent on to the host owning the shard",
        )
        self.batch_size = meter.create_histogram(
            "cos.journal.batch.size",
            unit="{command}",
            description="commands committed together in one journal transaction",
            explicit_bucket_boundaries_advisory=_BATCH_BUCKETS,
        )
        self.flush_duration = meter.create_histogram(
            "cos.journal.flush.duration",
            unit="ms",
            description="time of one journal transaction (group commit)",
            explicit_bucket_boundaries_advisory=_MS_BUCKETS,
        )
        self.delivered = meter.create_counter(
            "cos.readside.events.delivered",
            unit="{event}",
            description="events a read handler accepted",
        )
        self.failed = meter.create_counter(
            "cos.readside.events.failed",
            unit="{event}",
            description="failed deliveries to a read handler (each attempt)",
        )
        self._meter = meter

    def observe_node(
        self,
        *,
        fenced_writes: Callable[[], int],
        entities: Callable[[], int],
        shards: Callable[[], int],
    ) -> None:
        """Instruments read from the node when metrics are collected."""
        self._meter.create_observable_counter(
            "cos.journal.fenced_writes",
            [_single(fenced_writes)],
            unit="{write}",
            description="journal writes refused because another host had taken the shard",
        )
        self._meter.create_observable_gauge(
            "cos.entities.cached",
            [_single(entities)],
            unit="{entity}",
            description="entities held in memory by this host",
        )
        self._meter.create_observable_gauge(
            "cos.shards.owned",
            [_single(shards)],
            unit="{shard}",
            description="shards this host serves",
        )

    def observe_lag(self, samples: Callable[[], Iterable[LagSample]]) -> None:
        """Read-side lag per (read side, shard) of the shards this node serves."""

        def events(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(s.events, _lag_labels(s)) for s in samples()]

        def seconds(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(s.seconds, _lag_labels(s)) for s in samples()]

        self._meter.create_observable_gauge(
            "cos.readside.lag.events",
            [events],
            unit="{event}",
            description="events committed in the shard and not yet delivered to the read side",
        )
        self._meter.create_observable_gauge(
            "cos.readside.lag.seconds",
            [seconds],
            unit="s",
            description="age of the oldest event not yet delivered to the read side (0 when"
            " caught up)",
        )


def _lag_labels(sample: LagSample) -> dict[str, str | int]:
    return {"cos.read_side_id": sample.read_side_id, "cos.shard": sample.shard}


def _single(read: Callable[[], int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return callback


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
