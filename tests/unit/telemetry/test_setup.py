"""A node's telemetry: nothing at all unless asked for; the scrape port named when taken."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator

import pytest

from cos.errors import StartupError
from cos.telemetry import MetricsEndpoint, Telemetry, TelemetryConfig
from tests.support.processes import free_port


@pytest.fixture(autouse=True)
def _keep_environment() -> Iterator[None]:
    saved = dict(os.environ)  # Telemetry.start applies the OTEL_* variables it is given
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_without_an_endpoint_or_scrape_port_nothing_is_set_up() -> None:
    config = TelemetryConfig.from_environment({"OTEL_SERVICE_NAME": "bank"})
    telemetry = Telemetry.start(config, service_name="cos", instance="host-1")
    assert telemetry.instruments.tracer is None
    assert telemetry.instruments.metrics is None
    telemetry.shutdown()


def test_disabled_wins_over_an_endpoint_and_a_scrape_port() -> None:
    config = TelemetryConfig.from_environment(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}
    )
    scrape = MetricsEndpoint("127.0.0.1", free_port())
    telemetry = Telemetry.start(config, service_name="cos", instance="h", scrape=scrape)
    assert (telemetry.instruments.tracer, telemetry.instruments.metrics) == (None, None)


def test_the_scrape_endpoint_serves_metrics_and_a_taken_port_is_named() -> None:
    scrape = MetricsEndpoint("127.0.0.1", free_port())
    telemetry = Telemetry.start(TelemetryConfig(), service_name="cos", instance="h", scrape=scrape)
    try:
        assert telemetry.instruments.tracer is None  # no endpoint: no spans
        metrics = telemetry.instruments.metrics
        assert metrics is not None
        metrics.forwarded.add(3, {"rpc.method": "GetState"})
        url = f"http://127.0.0.1:{scrape.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        assert 'cos_commands_forwarded_total{otel_scope_name="cos"' in text
        assert " 3.0" in next(x for x in text.splitlines() if "forwarded_total{" in x)
        with pytest.raises(StartupError, match=f"COS_METRICS_PORT: .*127.0.0.1:{scrape.port}"):
            Telemetry.start(TelemetryConfig(), service_name="cos", instance="h", scrape=scrape)
    finally:
        telemetry.shutdown()
    with socket.socket() as sock:  # shut down: nothing listens there any more
        # (SO_REUSEADDR: the scrape's closed connection may linger in TIME_WAIT; a
        # listening socket would still refuse the bind.)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", scrape.port))
