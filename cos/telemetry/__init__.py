"""OpenTelemetry for the runtime: traces and metrics of the command path and the read
sides, set up from the standard ``OTEL_*`` variables (``docs/observability.md``).

The core knows nothing of it: the runtime asks :class:`Wrappers` for what to put around
each part it builds (an interceptor for the calls a node answers, wrappers for the calls
it makes and for the journal writes), and gets each part back unchanged when telemetry
is off.

- ``config``: what the ``OTEL_*`` and ``COS_METRICS_*`` variables ask for (no SDK).
- ``instruments``, ``metrics``: the tracer, metric instruments and propagator one node
  records with (the OpenTelemetry API only).
- ``inbound``, ``outbound``, ``journal``, ``lag``: the interceptor, the wrappers, the
  commit listener and the lag sampler; ``wrappers``: the one place that chooses them.
- ``setup``, ``offload``: the SDK, exporters, the Prometheus endpoint, and the process
  that encodes and exports spans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.telemetry._config import TelemetryConfig, TelemetryConfigError, TelemetrySettings
    from cos.telemetry._instruments import NO_INSTRUMENTS, Instruments
    from cos.telemetry._setup import MetricsEndpoint, Telemetry
    from cos.telemetry._wrappers import Wrappers

__all__ = [
    "NO_INSTRUMENTS",
    "Instruments",
    "MetricsEndpoint",
    "Telemetry",
    "TelemetryConfig",
    "TelemetryConfigError",
    "TelemetrySettings",
    "Wrappers",
]

__getattr__ = lazy_exports(__name__)
