"""A minimal OTLP/gRPC sink for the benchmark: counts what it receives and discards it.

It serves the trace and metrics collector services of ``opentelemetry-proto``
(``TraceService/Export``, ``MetricsService/Export``) on a thread pool, counts spans (in
total and by name) and metric exports, and answers every export with success. One more
method, ``/bench.OtlpSink/Counts`` (no proto: JSON bytes in the reply), tells the bench what
has been received so far, so it can take the spans of its measured window.

bench/run.py runs it as a subprocess of its own, so that its CPU counts neither for the
runtime nor for the bench's load client (it is reported apart).

Run: ``python bench/otlp_sink.py --port 4317``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import threading
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SINK_READY = "otlp sink listening on"
_COUNTS_METHOD = "/bench.OtlpSink/Counts"
# A batch of the SDK's default size (512 spans) is far below this; a larger one must not
# fail the exporter and go uncounted.
_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class SinkCounts:
    """What the sink has received since it started."""

    spans: int = 0
    trace_exports: int = 0
    metric_exports: int = 0
    by_name: dict[str, int] = field(default_factory=dict)

    def minus(self, earlier: SinkCounts) -> SinkCounts:
        """What was received after ``earlier`` was read."""
        names = Counter(self.by_name)
        names.subtract(earlier.by_name)
        return SinkCounts(
            spans=self.spans - earlier.spans,
            trace_exports=self.trace_exports - earlier.trace_exports,
            metric_exports=self.metric_exports - earlier.metric_exports,
            by_name={name: count for name, count in names.items() if count},
        )


class _Tally:
    """The counts, shared by the servicers' threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans = 0
        self._trace_exports = 0
        self._metric_exports = 0
        self._by_name: Counter[str] = Counter()

    def add_spans(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        names = Counter(
            span.name
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        )
        with self._lock:
            self._spans += names.total()
            self._trace_exports += 1
            self._by_name.update(names)

    def add_metrics(self) -> None:
        with self._lock:
            self._metric_exports += 1

    def snapshot(self) -> SinkCounts:
        with self._lock:
            return SinkCounts(
                self._spans, self._trace_exports, self._metric_exports, dict(self._by_name)
            )


class _TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, tally: _Tally) -> None:
        self._tally = tally

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._tally.add_spans(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, tally: _Tally) -> None:
        self._tally = tally

    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._tally.add_metrics()
        return metrics_service_pb2.ExportMetricsServiceResponse()


def _counts_handler(tally: _Tally) -> grpc.GenericRpcHandler:
    def counts(request: bytes, context: Any) -> bytes:
        snapshot = tally.snapshot()
        return json.dumps(dataclasses.asdict(snapshot)).encode()

    method = grpc.unary_unary_rpc_method_handler(counts)  # bytes in, bytes out
    return grpc.method_handlers_generic_handler("bench.OtlpSink", {"Counts": method})


class RunningSink:
    """A started sink: its server, the port it listens on, and what it has received."""

    def __init__(self, host: str, port: int) -> None:
        self._tally = _Tally()
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceSink(self._tally), self.server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsSink(self._tally), self.server
        )
        self.server.add_generic_rpc_handlers((_counts_handler(self._tally),))
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        self.server.start()

    def counts(self) -> SinkCounts:
        """What has been received so far."""
        return self._tally.snapshot()


def read_counts(target: str, timeout: float = 5.0) -> SinkCounts:
    """What the sink at ``target`` (host:port) has received so far."""
    with grpc.insecure_channel(target) as channel:
        reply: bytes = channel.unary_unary(_COUNTS_METHOD)(b"", timeout=timeout)
    return SinkCounts(**json.loads(reply))


def main() -> None:
    """Serves until SIGTERM or Ctrl-C, then prints the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=4317, help="port (0: any free one)")
    args = parser.parse_args()
    sink = RunningSink(args.host, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"{SINK_READY} {args.host}:{sink.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    sink.server.stop(grace=2).wait()
    counts = sink.counts()
    print(
        f"received {counts.spans} spans in {counts.trace_exports} exports,"
        f" {counts.metric_exports} metric exports",
        flush=True,
    )


if __name__ == "__main__":
    main()
