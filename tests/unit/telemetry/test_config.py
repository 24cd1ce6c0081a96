"""What the OTEL_* variables turn on, and the values refused at start-up."""

from __future__ import annotations

import pytest

from cos.settings import SettingsError, load_settings
from cos.telemetry import TelemetryConfig, TelemetryConfigError


def config(**environ: str) -> TelemetryConfig:
    return TelemetryConfig.from_environment(environ)


def test_nothing_is_on_without_an_endpoint() -> None:
    empty = config(OTEL_SERVICE_NAME="bank", OTEL_TRACES_SAMPLER="always_on")
    assert (empty.traces, empty.metrics) == (False, False)


def test_an_endpoint_turns_on_traces_and_metrics_unless_an_exporter_is_none() -> None:
    both = config(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317")
    assert (both.traces, both.metrics) == (True, True)
    traces_only = config(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://collector:4317", OTEL_METRICS_EXPORTER="none"
    )
    assert (traces_only.traces, traces_only.metrics) == (True, False)
    off = config(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317", OTEL_SDK_DISABLED="true")
    assert (off.traces, off.metrics, off.disabled) == (False, False, True)
    # Chief of State's own switch is honoured too.
    agent_off = config(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317", OTEL_JAVAAGENT_ENABLED="false"
    )
    assert (agent_off.traces, agent_off.disabled) == (False, True)
    agent_on = config(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4317", OTEL_JAVAAGENT_ENABLED="true"
    )
    assert agent_on.traces


def test_protocol_and_propagators_default_and_per_signal() -> None:
    plain = config()
    assert plain.protocol("TRACES") == "grpc"
    assert plain.propagators == ("tracecontext", "baggage")
    chosen = config(
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="grpc",
        OTEL_PROPAGATORS="b3, tracecontext",
    )
    assert (chosen.protocol("TRACES"), chosen.protocol("METRICS")) == ("http/protobuf", "grpc")
    assert chosen.propagators == ("b3", "tracecontext")


def test_only_otel_variables_are_kept() -> None:
    kept = TelemetryConfig.from_environment({"OTEL_SERVICE_NAME": "bank", "COS_PORT": "9000"})
    assert kept.environment == (("OTEL_SERVICE_NAME", "bank"),)


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ("OTEL_PROPAGATORS", "jaeger", "OTEL_PROPAGATORS"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "5s", "OTEL_METRIC_EXPORT_INTERVAL"),
        ("OTEL_SDK_DISABLED", "maybe", "OTEL_SDK_DISABLED"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, named: str) -> None:
    with pytest.raises(TelemetryConfigError, match=f"^{named}: .*{value!r}"):
        config(**{name: value})


def test_a_bad_sampler_ratio_is_refused() -> None:
    with pytest.raises(TelemetryConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
        config(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="10%")


def test_load_settings_reads_the_otel_variables_and_names_a_bad_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COS_WRITE_SIDE_HOST", "handler")
    monkeypatch.setenv("COS_WRITE_SIDE_PORT", "50051")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert load_settings().telemetry.otel.traces
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "half")
    with pytest.raises(SettingsError, match="^OTEL_TRACES_SAMPLER: "):
        load_settings()
