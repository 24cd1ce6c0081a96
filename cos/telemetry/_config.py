"""What the standard ``OTEL_*`` variables ask for, read and checked without the SDK.

The driver (``cos serve``) reads the variables once, with the rest of the settings, and
every node applies the same ones in its own process (:mod:`cos.telemetry.setup`), so a
node's telemetry does not depend on the environment its Ray worker happened to inherit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from cos.config import Part

PROTOCOLS = ("grpc", "http/protobuf")
PROPAGATORS = ("tracecontext", "baggage", "b3", "b3multi", "none")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` variable has a value the runtime cannot use; the message names it."""


@dataclass(frozen=True)
class TelemetryConfig:
    """The ``OTEL_*`` environment of the driver, and what it turns on."""

    environment: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> TelemetryConfig:
        """Keep the ``OTEL_*`` variables of ``environ``, checking the ones the runtime
        interprets; raises :class:`TelemetryConfigError`."""
        config = cls(tuple(sorted((k, v) for k, v in environ.items() if k.startswith("OTEL_"))))
        config.check()
        return config

    def get(self, name: str, default: str = "") -> str:
        """The value of ``name``, or ``default`` when unset."""
        return dict(self.environment).get(name, default).strip()

    @property
    def disabled(self) -> bool:
        """``OTEL_SDK_DISABLED=true``, or Chief of State's switch
        ``OTEL_JAVAAGENT_ENABLED=false``: no telemetry at all."""
        agent = self.get("OTEL_JAVAAGENT_ENABLED", "true").lower()
        return self.get("OTEL_SDK_DISABLED").lower() in _TRUE or agent in _FALSE

    def _exports(self, signal: str) -> bool:
        if self.disabled or self.get(f"OTEL_{signal}_EXPORTER", "otlp").lower() == "none":
            return False
        return bool(self.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or self.get(_ENDPOINT))

    @property
    def traces(self) -> bool:
        """Spans are made and exported: an OTLP endpoint is set and traces are not off."""
        return self._exports("TRACES")

    @property
    def metrics(self) -> bool:
        """Metrics are exported over OTLP."""
        return self._exports("METRICS")

    def protocol(self, signal: str) -> str:
        """``grpc`` or ``http/protobuf`` for ``TRACES`` or ``METRICS`` (default ``grpc``,
        port 4317, as Chief of State's agent is set up in its samples)."""
        general = self.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        return self.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", general).lower()

    @property
    def propagators(self) -> tuple[str, ...]:
        """``OTEL_PROPAGATORS``, default ``tracecontext,baggage``."""
        names = self.get("OTEL_PROPAGATORS", "tracecontext,baggage")
        return tuple(n.strip().lower() for n in names.split(",") if n.strip())

    def check(self) -> None:
        """Refuse values the SDK would ignore or fail on later, one variable at a time."""
        for name in ("OTEL_SDK_DISABLED", "OTEL_JAVAAGENT_ENABLED"):
            flag = self.get(name).lower()
            if flag not in _TRUE + _FALSE:
                raise TelemetryConfigError(f"{name}: must be true or false (got {flag!r})")
        for name in (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        ):
            _one_of(name, self.get(name).lower(), PROTOCOLS)
        for propagator in self.propagators:
            _one_of("OTEL_PROPAGATORS", propagator, PROPAGATORS)
        _one_of("OTEL_TRACES_SAMPLER", self.get("OTEL_TRACES_SAMPLER").lower(), SAMPLERS)
        if "ratio" in self.get("OTEL_TRACES_SAMPLER"):
            _ratio(self.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        interval = self.get("OTEL_METRIC_EXPORT_INTERVAL")
        if interval and (not interval.isdigit() or int(interval) == 0):
            raise TelemetryConfigError(
                f"OTEL_METRIC_EXPORT_INTERVAL: must be a positive number of ms (got {interval!r})"
            )


_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value and value not in allowed:
        raise TelemetryConfigError(f"{name}: must be one of {', '.join(allowed)} (got {value!r})")


def _ratio(value: str) -> None:
    try:
        ratio = float(value)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise TelemetryConfigError(
            f"OTEL_TRACES_SAMPLER_ARG: must be a ratio from 0 to 1 (got {value!r})"
        )


class TelemetrySettings(Part):
    """Telemetry: the ``OTEL_*`` environment (traces and metrics over OTLP), and the
    Prometheus endpoint (``COS_METRICS_*``)."""

    env_prefix = "COS_METRICS_"

    port: int | None = Field(
        None,
        gt=0,
        lt=65536,
        description="port of the Prometheus metrics endpoint (/metrics); off when unset",
    )
    address: str | None = Field(
        None, description="address the metrics endpoint binds (default: COS_ADDRESS)"
    )
    # Read by cos.settings from the standard OTEL_* variables.
    otel: TelemetryConfig = Field(TelemetryConfig(), exclude=True)
