"""OpenTelemetry end to end: ``cos serve`` exporting to an OTLP receiver inside the test,
with the test's write handler (tracing its own span) and read handler in their own
processes, and the Prometheus endpoint scraped over HTTP."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from chief_of_state.v1 import manager_pb2, manager_pb2_grpc, service_pb2_grpc
from cos.postgres import DatabaseTarget
from tests.support.commands import request, state_of
from tests.support.database import db_env
from tests.support.otlp import ReceivedSpan, RunningReceiver
from tests.support.processes import Process, free_port, start_write_handler
from tests.support.readsides import Reader, start_reader
from tests.support.serve import COS, OPERATOR_METADATA, serve_env
from tests.support.waiting import wait_until

__all__ = ["start_reader"]  # the fixture, for pytest

SERVER, CLIENT = 2, 3  # OTLP span kinds
ERROR = 2  # OTLP status code
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass
class Runtime:
    process: Process
    port: int
    metrics_port: int
    channel: grpc.aio.Channel

    @property
    def stub(self) -> service_pb2_grpc.ChiefOfStateServiceStub:
        return service_pb2_grpc.ChiefOfStateServiceStub(self.channel)

    @property
    def manager(self) -> manager_pb2_grpc.ReadSideManagerServiceStub:
        return manager_pb2_grpc.ReadSideManagerServiceStub(self.channel)

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return str(reply.read().decode())


@pytest.fixture
def start_runtime(database: DatabaseTarget) -> Iterator[Callable[..., Runtime]]:
    started: list[tuple[Runtime, Process]] = []

    def start(reader: Reader | None, handler_args: tuple[str, ...] = (), **env: str) -> Runtime:
        handler, handler_port = start_write_handler(*handler_args)
        port, metrics_port = free_port(), free_port()
        variables = serve_env(handler_port, port, **db_env(database))
        variables.update(
            COS_METRICS_PORT=str(metrics_port),
            COS_SERVICE_NAME="bank-cos",
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_METRIC_EXPORT_INTERVAL="500",
        )
        if reader is not None:
            variables.update(
                COS_READ_SIDE_ENABLED="true",
                **{
                    f"COS_READ_SIDE_CONFIG__HOST__{reader.read_side_id}": "127.0.0.1",
                    f"COS_READ_SIDE_CONFIG__PORT__{reader.read_side_id}": str(reader.port),
                },
            )
        variables.update(env)
        process = Process([*COS, "serve"], env=variables)
        process.wait_for(r"cos serve ready", timeout=180)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        runtime = Runtime(process, port, metrics_port, channel)
        started.append((runtime, handler))
        return runtime

    yield start
    for runtime, handler in started:
        runtime.process.stop()
        handler.stop()


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def one_trace(spans: list[ReceivedSpan], trace_id: str) -> dict[str, ReceivedSpan]:
    """The spans of one trace by name (each name once, but HandleEvent once per event)."""
    found = [s for s in spans if s.trace_id == trace_id and not s.name.endswith("HandleEvent")]
    names = [s.name for s in found]
    assert len(names) == len(set(names)), names
    return {s.name: s for s in found}


async def test_one_command_is_one_trace_from_the_caller_to_the_handler_and_read_side(
    receiver: RunningReceiver,
    start_runtime: Callable[..., Runtime],
    start_reader: Callable[..., Reader],
) -> None:
    reader = start_reader("ledger")
    cos = start_runtime(
        reader,
        ("--otlp", receiver.grpc_endpoint),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint,
    )
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    await cos.stub.ProcessCommand(
        request("acct-1", add=[5, 7]), metadata=(("traceparent", caller),)
    )
    service = "chief_of_state.v1.ChiefOfStateService/ProcessCommand"
    handler = "chief_of_state.v1.WriteSideHandlerService"
    delivery = "chief_of_state.v1.ReadSideHandlerService/HandleReadSide"

    def complete(spans: list[ReceivedSpan]) -> bool:
        ours = {s.name for s in spans if s.trace_id == CALLER_TRACE}
        wanted = {service, "cos.route", f"{handler}/HandleCommand", "test-writer.HandleCommand"}
        return wanted <= ours and len(by_name(spans, delivery)) == 2

    spans = receiver.receiver.wait_for_spans(complete)
    trace = one_trace(spans, CALLER_TRACE)
    server = trace[service]
    # The server span continues the caller's context; everything else hangs below it.
    assert (server.parent_span_id, server.kind) == (CALLER_SPAN, SERVER)
    assert server.resource["service.name"] == "bank-cos"  # COS_SERVICE_NAME by default
    assert server.attributes["cos.entity_id"] == "acct-1"
    assert server.attributes["rpc.grpc.status_code"] == 0
    route = trace["cos.route"]
    assert route.parent_span_id == server.span_id
    assert route.attributes["cos.owner_host"]
    command = trace[f"{handler}/HandleCommand"]
    assert (command.parent_span_id, command.kind) == (route.span_id, CLIENT)
    # The handler's own span joined the trace through the headers it was sent.
    handler_span = trace["test-writer.HandleCommand"]
    assert handler_span.parent_span_id == command.span_id
    assert handler_span.service == "test-writer"
    events = [s for s in spans if s.trace_id == CALLER_TRACE and s.name.endswith("HandleEvent")]
    assert sorted(s.attributes["cos.revision"] for s in events) == [1, 2]
    assert {s.parent_span_id for s in events} == {route.span_id}
    append = trace["cos.journal.append"]
    assert append.parent_span_id == route.span_id
    assert (
        append.attributes["cos.journal.position.last"]
        - (append.attributes["cos.journal.position.first"])
        == 1
    )
    # Each delivery is a trace of its own, linked to the command's journal append.
    deliveries = by_name(spans, delivery)
    assert {d.links for d in deliveries} == {((CALLER_TRACE, append.span_id),)}
    assert all(d.trace_id != CALLER_TRACE and d.kind == CLIENT for d in deliveries)
    assert sorted(d.attributes["cos.revision"] for d in deliveries) == [1, 2]
    # ...and the read handler was sent the delivery span's context.
    await wait_until(lambda: len(reader.records()) == 2)
    sent = {r["headers"]["traceparent"].split("-")[2] for r in reader.records()}
    assert sent == {d.span_id for d in deliveries}
    assert set(receiver.receiver.paths) == {"grpc"}


async def test_a_handler_error_marks_the_spans_with_its_code(
    receiver: RunningReceiver, start_runtime: Callable[..., Runtime]
) -> None:
    cos = start_runtime(None, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(
            request("acct-2", fail="FAILED_PRECONDITION", message="insufficient funds")
        )
    assert failed.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    name = "chief_of_state.v1.WriteSideHandlerService/HandleCommand"
    spans = receiver.receiver.wait_for_spans(lambda s: bool(by_name(s, name)))
    trace = one_trace(spans, by_name(spans, name)[0].trace_id)
    for span in (trace[name], trace["chief_of_state.v1.ChiefOfStateService/ProcessCommand"]):
        assert span.status_code == ERROR
        assert (
            span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        )
        assert span.status_message == "FAILED_PRECONDITION: insufficient funds"
    assert "cos.journal.append" not in trace  # nothing was written


def sample(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples of ``name`` with ``labels`` in the Prometheus text ``text``;
    None when there is none."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
        and all(f'{k}="{v}"' in line for k, v in labels.items())
    ]
    return sum(values) if values else None


def metric(text: str, name: str, **labels: str) -> float:
    """Like :func:`sample`, for a metric that must be there."""
    value = sample(text, name, **labels)
    assert value is not None, f"no {name} {labels} in:\n{text}"
    return value


async def test_prometheus_counts_commands_deliveries_and_read_side_lag(
    receiver: RunningReceiver,
    start_runtime: Callable[..., Runtime],
    start_reader: Callable[..., Reader],
) -> None:
    reader = start_reader("ledger")
    # Over HTTP/protobuf this time, with B3 headers.
    cos = start_runtime(
        reader,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_PROPAGATORS="b3",
    )
    entities = [f"acct-{i}" for i in range(10)]
    for _ in range(3):
        replies = await asyncio.gather(
            *(cos.stub.ProcessCommand(request(e, add=[1])) for e in entities)
        )
    # The handler was sent the B3 header (and no W3C one), from a span of ours.
    headers = state_of(replies[0])["last_headers"]
    assert "traceparent" not in headers
    assert re.fullmatch(r"[0-9a-f]{32}-[0-9a-f]{16}-1", headers["b3"])
    await wait_until(lambda: len(reader.records()) == 30)
    text = cos.scrape()
    assert metric(text, "cos_commands_total", cos_outcome="ok") == 30
    assert metric(text, "rpc_server_duration_milliseconds_count", rpc_method="ProcessCommand") == 30
    assert metric(text, "cos_readside_events_delivered_total", cos_read_side_id="ledger") == 30
    assert metric(text, "cos_shards_owned") == 4
    assert metric(text, "cos_entities_cached") == 10
    calls = metric(text, "rpc_client_duration_milliseconds_count", rpc_method="HandleEvent")
    assert calls == 30
    # Paused, the read side falls behind; resumed, it catches up.
    pause = manager_pb2.PauseReadSideRequest(read_side_id="ledger")
    await cos.manager.PauseReadSide(pause, metadata=OPERATOR_METADATA)
    await asyncio.gather(*(cos.stub.ProcessCommand(request(e, add=[1])) for e in entities))

    def lag() -> float | None:
        # Sampled once a second: the series appears with the first sample.
        return sample(cos.scrape(), "cos_readside_lag_events", cos_read_side_id="ledger")

    await wait_until(lambda: lag() == 10, what="lag of 10 events while paused")
    await asyncio.sleep(1.5)
    seconds = metric(cos.scrape(), "cos_readside_lag_seconds", cos_read_side_id="ledger")
    assert seconds >= 1.0
    resume = manager_pb2.ResumeReadSideRequest(read_side_id="ledger")
    await cos.manager.ResumeReadSide(resume, metadata=OPERATOR_METADATA)
    await wait_until(lambda: lag() == 0, what="no lag after resume")
    assert metric(cos.scrape(), "cos_readside_lag_seconds", cos_read_side_id="ledger") == 0
    # The same metrics went out over OTLP/HTTP, and spans too.
    await wait_until(lambda: "cos.commands" in receiver.receiver.metric_names())
    assert {"rpc.server.duration", "cos.journal.batch.size"} <= receiver.receiver.metric_names()
    assert receiver.receiver.spans() and set(receiver.receiver.paths) == {"http"}
