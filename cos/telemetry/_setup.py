"""The OpenTelemetry SDK of one node, set up from the ``OTEL_*`` variables the driver read.

The variables are applied to this process's environment first, so the SDK's own
readers of ``OTEL_*`` (exporter endpoints, headers, TLS, timeouts, the sampler, resource
attributes, the export interval) see exactly what the operator gave ``cos serve``.
Nothing here runs on the command path: it builds the :class:`Instruments` that does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from cos.errors import StartupError
from cos.telemetry._config import TelemetryConfig
from cos.telemetry._instruments import NO_INSTRUMENTS, Instruments
from cos.telemetry._metrics import Metrics

# The SDK, its exporters and the Prometheus client load only when telemetry is on.
if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

SCOPE = "cos"


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where the Prometheus scrape endpoint listens (``COS_METRICS_ADDRESS``/``PORT``)."""

    address: str
    port: int


class Telemetry:
    """A node's providers, exporters and scrape endpoint, and the instruments they feed."""

    def __init__(
        self,
        instruments: Instruments = NO_INSTRUMENTS,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        scrape_server: Any = None,
    ) -> None:
        self.instruments = instruments
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._scrape_server = scrape_server

    @classmethod
    def start(
        cls,
        config: TelemetryConfig,
        *,
        service_name: str,
        instance: str,
        scrape: MetricsEndpoint | None = None,
    ) -> Telemetry:
        """Set up what ``config`` and ``scrape`` ask for; nothing at all when neither
        asks for anything. Raises :class:`StartupError` when the scrape port is taken."""
        if config.disabled:
            if scrape is not None:
                log.warning("OTEL_SDK_DISABLED is set: no metrics on COS_METRICS_PORT either")
            return cls()
        if not (config.traces or config.metrics or scrape):
            return cls()
        _apply(config)
        if config.traces:
            add_trace_ids_to_logs()
        from opentelemetry.sdk.metrics import MeterProvider

        resource = _resource(config, service_name, instance)
        propagator = _propagator(config.propagators)
        tracer_provider = _tracer_provider(config, resource) if config.traces else None
        readers, server = _metric_readers(config, scrape)
        meter_provider = (
            MeterProvider(resource=resource, metric_readers=readers) if readers else None
        )
        instruments = Instruments(
            tracer=tracer_provider.get_tracer(SCOPE) if tracer_provider else None,
            metrics=Metrics(meter_provider.get_meter(SCOPE)) if meter_provider else None,
            propagator=propagator,
            headers=frozenset(propagator.fields),
        )
        signals = [n for n, on in (("traces", config.traces), ("metrics", config.metrics)) if on]
        log.info(
            "telemetry: %s over OTLP%s",
            " and ".join(signals) or "nothing",
            f"; metrics on http://{scrape.address}:{scrape.port}/metrics" if scrape else "",
        )
        return cls(
            instruments,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            scrape_server=server,
        )

    def shutdown(self) -> None:
        """Export what is buffered and stop (blocking: run it off the event loop)."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()
        if self._scrape_server is not None:
            self._scrape_server.shutdown()
            self._scrape_server.server_close()


def _apply(config: TelemetryConfig) -> None:
    # The driver's OTEL_* and only those: a Ray worker may have inherited others.
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    os.environ.update(dict(config.environment))


def _resource(config: TelemetryConfig, service_name: str, instance: str) -> Resource:
    from opentelemetry.sdk.resources import Resource

    attributes = {"service.instance.id": instance}
    named = config.get("OTEL_SERVICE_NAME") or "service.name=" in config.get(
        "OTEL_RESOURCE_ATTRIBUTES"
    )
    if not named:
        attributes["service.name"] = service_name  # COS_SERVICE_NAME
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME itself.
    return Resource.create(attributes)


def _propagator(names: tuple[str, ...]) -> TextMapPropagator:
    found = []
    for name in names:
        if name == "none":
            continue
        (entry,) = entry_points(group="opentelemetry_propagator", name=name)
        found.append(entry.load()())
    return CompositePropagator(found)


def _tracer_provider(config: TelemetryConfig, resource: Resource) -> TracerProvider:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from cos.telemetry.offload import PipeSpanExporter

    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER(_ARG)
    # Batches go to a process of their own to be encoded and sent (cos.telemetry.offload).
    exporter = PipeSpanExporter(resource, config.protocol("TRACES"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _metric_readers(
    config: TelemetryConfig, scrape: MetricsEndpoint | None
) -> tuple[list[MetricReader], Any]:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    readers: list[MetricReader] = []
    if config.metrics:
        if config.protocol("METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
        # The interval: OTEL_METRIC_EXPORT_INTERVAL, read by the reader.
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    server = None
    if scrape is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        registry = CollectorRegistry(auto_describe=True)
        readers.append(PrometheusMetricReader(registry=registry))
        try:
            server, _ = start_http_server(scrape.port, scrape.address, registry=registry)
        except OSError as exc:
            raise StartupError(
                f"COS_METRICS_PORT: cannot listen on {scrape.address}:{scrape.port}"
                f" ({exc.strerror or exc}); choose another port (COS_METRICS_ADDRESS,"
                " COS_METRICS_PORT)"
            ) from None
    return readers, server


class _TraceIds(logging.Filter):
    """Gives a record written inside a traced operation the ids that find its trace (the
    JSON log style shows them as ``trace_id`` and ``span_id``). The filter runs in the
    logging call, in the caller's context."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format_trace_id(context.trace_id)
            record.span_id = format_span_id(context.span_id)
        return True


def add_trace_ids_to_logs() -> None:
    """Give every record written inside a traced operation its trace and span ids."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _TraceIds) for f in handler.filters):
            handler.addFilter(_TraceIds())
