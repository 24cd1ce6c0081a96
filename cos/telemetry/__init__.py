"""OpenTelemetry for the runtime: traces and metrics of the command path and the read
sides, set up from the standard ``OTEL_*`` variables (``docs/observability.md``).

- :mod:`cos.telemetry.config`: what the ``OTEL_*`` variables ask for (no SDK).
- :mod:`cos.telemetry.instruments`: the tracer, metric instruments and propagator one
  node records with (the OpenTelemetry API only; what the command path imports).
- :mod:`cos.telemetry.command_path`: the interceptor and the write handler wrapper.
- :mod:`cos.telemetry.setup`: the SDK, exporters and the Prometheus endpoint of a node.
"""

from cos.telemetry.config import TelemetryConfig, TelemetryConfigError
from cos.telemetry.instruments import NO_INSTRUMENTS, Instruments, LagSample, Metrics

__all__ = [
    "NO_INSTRUMENTS",
    "Instruments",
    "LagSample",
    "Metrics",
    "TelemetryConfig",
    "TelemetryConfigError",
]
