"""Benchmark of the ProcessCommand path: the runtime (`cos serve`) against the floor, and
the runtime with tracing off against tracing on.

Starts the bank example's write handler, then for each target in turn starts it, waits
until it answers GetState, drives bench/load.py's load, meters the CPU of the target's own
process tree over the measured window, reads every account back to check that acknowledged
deposits were kept, and stops it. The targets: ``runtime`` (tracing off), ``traced`` and
``traced-10`` (the runtime exporting spans of every command, or of one in ten, over
OTLP/gRPC to bench/otlp_sink.py, a subprocess of its own started with the target),
``runtime-keyed`` (the runtime, every command sent with a unique x-cos-idempotency-key) and
``floor`` (bench/floor.py). Prints one row per target, the runtime/floor throughput ratio
and each traced target's ratios to the runtime. The handler's, PostgreSQL's and the sink's
CPU count for no target.

Run: ``python bench/run.py [--concurrency 64 --duration 20 ...] [--only runtime,floor]
[--tracing]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import asyncpg
import grpc
from load import LoadResult, LoadSettings, check_balances, run_load
from otlp_sink import SINK_READY, SinkCounts, read_counts
from processes import CpuUse, MachineCpuMeter, ServerProcess, StartupError, TreeCpuMeter

from chief_of_state.v1 import service_pb2, service_pb2_grpc

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HANDLER_READY = "bank write handler listening on"
# also the order they run in
TARGETS = ("runtime", "runtime-keyed", "traced", "traced-10", "floor")
DEFAULT_TARGETS = ("runtime", "floor")
# The traced targets and the share of commands each samples (OTEL_TRACES_SAMPLER_ARG).
SAMPLING = {"traced": "1.0", "traced-10": "0.1"}


@dataclass(frozen=True)
class BenchSettings:
    """Everything one benchmark run needs, from the command line."""

    concurrency: int = 64
    duration: float = 20.0
    warmup: float = 3.0
    entities: int = 1000
    targets: tuple[str, ...] = DEFAULT_TARGETS
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "postgres"
    db_password: str | None = None
    db_name: str = "postgres"
    num_shards: int | None = None
    floor_pool_size: int = 16
    startup_timeout: float = 120.0
    keep_schemas: bool = False
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cos-bench-")))

    def load(self, target: str, *, keyed: bool = False) -> LoadSettings:
        """The load settings for one target (``keyed``: a unique idempotency key on every
        command)."""
        return LoadSettings(
            target=target,
            keyed=keyed,
            concurrency=self.concurrency,
            duration=self.duration,
            warmup=self.warmup,
            entities=self.entities,
        )


@dataclass(frozen=True)
class TracingUse:
    """What the OTLP sink of a traced target received, and the sink's own CPU."""

    sampling: float
    window: SinkCounts  # exports received inside the measured window
    total: SinkCounts  # everything, until the target had stopped
    sink_cpu_seconds: float

    def per_command(self, commands: int) -> float:
        """Spans received in the window per command completed in it."""
        return self.window.spans / commands if commands else math.nan


@dataclass(frozen=True)
class Measurement:
    """What one target did under the load, and what the machine did meanwhile."""

    name: str
    load: LoadResult
    cpu: CpuUse
    handler_cpu_seconds: float
    client_cpu_seconds: float
    machine_busy_cores: float
    balances_matched: int
    balance_problems: list[str]
    stop_notes: list[str]
    tracing: TracingUse | None = None

    @property
    def cpu_per_1k(self) -> float:
        """CPU seconds of the target's processes per 1,000 successful commands."""
        commands = self.load.commands
        return self.cpu.seconds * 1000.0 / commands if commands else math.nan


class OtlpSink:
    """The OTLP sink of one traced target: its subprocess, and what it received in the
    measured window."""

    def __init__(self, settings: BenchSettings, target: str) -> None:
        self.port = free_port()
        self.sampling = float(SAMPLING[target])
        argv = [sys.executable, str(BENCH_DIR / "otlp_sink.py"), "--port", str(self.port)]
        self.process = ServerProcess("otlp sink", argv, settings.log_dir / f"{target}-sink.log")
        self._target = f"127.0.0.1:{self.port}"
        self._cpu: TreeCpuMeter | None = None
        self._at_start = SinkCounts()
        self._window = SinkCounts()

    def environment(self) -> dict[str, str]:
        """The OTEL_* variables of the traced target: spans sampled at its ratio and
        exported over OTLP/gRPC to this sink, no metrics exported. Parent-based, as an
        operator would set it; the bench's calls carry no trace context, so every command
        starts a trace and the ratio decides."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self._target}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(self.sampling),
            "OTEL_METRICS_EXPORTER": "none",
        }

    async def start(self) -> None:
        """Starts the sink and waits until it listens."""
        self.process.start()
        await asyncio.to_thread(self.process.wait_for_output, SINK_READY, 30.0)
        # A single process alive throughout: sampling at the window's edges is enough.
        self._cpu = TreeCpuMeter(self.process.pid, descendants=False)

    def mark_start(self) -> None:
        """Opens the window: what was received so far does not count."""
        assert self._cpu is not None, "not started"
        self._cpu.mark_start()
        self._at_start = read_counts(self._target)

    def mark_end(self) -> None:
        """Closes the window."""
        assert self._cpu is not None, "not started"
        self._window = read_counts(self._target).minus(self._at_start)
        self._cpu.mark_end()

    def use(self) -> TracingUse:
        """What the sink received: in the window, and in all (read once the target stopped
        and flushed what it had buffered)."""
        assert self._cpu is not None, "not started"
        total = read_counts(self._target)
        return TracingUse(self.sampling, self._window, total, self._cpu.window.seconds)


class _Meters:
    """The meters of one measurement, opened and closed with the load's window."""

    def __init__(self, target_pid: int, handler_pid: int, sink: OtlpSink | None) -> None:
        self.target = TreeCpuMeter(target_pid)
        # The handler and the bench itself are single processes alive throughout: sampling
        # at the window's edges is enough for them, no background thread needed.
        self.handler = TreeCpuMeter(handler_pid)
        self.client = TreeCpuMeter(os.getpid(), descendants=False)
        self.machine = MachineCpuMeter()
        self.sink = sink

    def mark_start(self) -> None:
        """Opens every meter's window."""
        for meter in (self.target, self.handler, self.client, self.machine, self.sink):
            if meter is not None:
                meter.mark_start()

    def mark_end(self) -> None:
        """Closes every meter's window."""
        for meter in (self.target, self.handler, self.client, self.machine, self.sink):
            if meter is not None:
                meter.mark_end()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cos_executable() -> str:
    # The console script beside this interpreter, so the runtime runs in the same venv.
    beside = Path(sys.executable).with_name("cos")
    return str(beside) if beside.exists() else (shutil.which("cos") or "cos")


def runtime_process(
    settings: BenchSettings,
    port: int,
    handler_port: int,
    schema: str,
    extra_env: dict[str, str] | None = None,
    *,
    name: str = "runtime",
) -> ServerProcess:
    """`cos serve` on ``port`` with its own fresh schema (and ``extra_env`` on top), named
    ``name`` in the report and its log file."""
    env = {**(extra_env or {}), **runtime_env(settings, port, handler_port, schema)}
    argv = [_cos_executable(), "serve"]
    return ServerProcess(name, argv, settings.log_dir / f"{name}.log", env)


def runtime_env(
    settings: BenchSettings, port: int, handler_port: int, schema: str
) -> dict[str, str]:
    """The COS_* variables of a bench's cos serve on ``port`` with its own schema."""
    env = {
        "COS_PORT": str(port),
        "COS_WRITE_SIDE_HOST": "127.0.0.1",
        "COS_WRITE_SIDE_PORT": str(handler_port),
        "COS_DB_HOST": settings.db_host,
        "COS_DB_PORT": str(settings.db_port),
        "COS_DB_USER": settings.db_user,
        "COS_DB_NAME": settings.db_name,
        "COS_DB_SCHEMA": schema,
    }
    if settings.db_password is not None:
        env["COS_DB_PASSWORD"] = settings.db_password
    if settings.num_shards is not None:
        env["COS_NUM_SHARDS"] = str(settings.num_shards)
    return env


def floor_process(
    settings: BenchSettings, port: int, handler_port: int, schema: str
) -> ServerProcess:
    """bench/floor.py on ``port`` with its own fresh schema."""
    argv = [
        sys.executable,
        str(BENCH_DIR / "floor.py"),
        *("--port", str(port), "--write-side", f"127.0.0.1:{handler_port}"),
        *("--db-host", settings.db_host, "--db-port", str(settings.db_port)),
        *("--db-user", settings.db_user, "--db-name", settings.db_name),
        *("--schema", schema, "--pool-size", str(settings.floor_pool_size)),
    ]
    if settings.db_password is not None:
        argv += ["--db-password", settings.db_password]
    return ServerProcess("floor", argv, settings.log_dir / "floor.log")


Stub = service_pb2_grpc.ChiefOfStateServiceStub
_READINESS_PROBE = service_pb2.GetStateRequest(entity_id="bench-readiness-probe")


async def state_answered(stub: Stub) -> None:
    """GetState of an entity nobody made: NOT_FOUND is an answer too."""
    try:
        await stub.GetState(_READINESS_PROBE, timeout=2)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise


async def wait_ready(
    server: ServerProcess,
    target: str,
    timeout: float,
    probe: Callable[[Stub], Awaitable[None]] = state_answered,
    interval: float = 0.5,
) -> None:
    """Calls ``probe`` every ``interval`` seconds until it succeeds; StartupError if the
    server exits first or ``timeout`` passes."""
    deadline, last = time.monotonic() + timeout, "none"
    # Reconnect at once: with gRPC's default backoff (1 s, then 1.6 times longer each
    # time) a channel that tried before the server listened waits seconds to try again,
    # and the start would be timed by the client's backoff, not by the server.
    backoff = [(f"grpc.{name}_reconnect_backoff_ms", 10) for name in ("initial", "min", "max")]
    async with grpc.aio.insecure_channel(target, options=backoff) as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        while True:
            if server.exit_code() is not None:
                raise server.failure(f"exited with code {server.exit_code()} before ready")
            try:
                await probe(stub)
                return
            except grpc.aio.AioRpcError as exc:
                last = exc.code().name
            if time.monotonic() > deadline:
                raise server.failure(f"not ready within {timeout:.0f} s (last answer {last})")
            await asyncio.sleep(interval)


async def measure(
    server: ServerProcess,
    port: int,
    handler: ServerProcess,
    settings: BenchSettings,
    sink: OtlpSink | None = None,
) -> Measurement:
    """Starts the server, loads it, meters CPU over the window, checks it, stops it; with
    ``sink`` (started), also counts the spans the server exported to it."""
    target = f"127.0.0.1:{port}"
    server.start()
    meters = _Meters(server.pid, handler.pid, sink)
    try:
        meters.target.start()
        await wait_ready(server, target, settings.startup_timeout)
        print(f"{server.name}: ready on {target}; loading", flush=True)
        load = settings.load(target, keyed=server.name == "runtime-keyed")
        result = await run_load(load, meters.mark_start, meters.mark_end)
        matched, problems = await check_balances(target, result.balances)
    finally:
        meters.target.stop()
        stop_notes = server.stop(also=meters.target.seen())
    return Measurement(
        name=server.name,
        load=result,
        cpu=meters.target.window,
        handler_cpu_seconds=meters.handler.window.seconds,
        client_cpu_seconds=meters.client.window.seconds,
        machine_busy_cores=meters.machine.busy_cores,
        balances_matched=matched,
        balance_problems=problems,
        stop_notes=stop_notes,
        tracing=sink.use() if sink is not None else None,
    )


async def drop_schemas(settings: BenchSettings, schemas: list[str]) -> None:
    """Drops the schemas the run created; a failure is reported, not raised, so that it
    never hides the error that ended the run."""
    try:
        conn = await asyncpg.connect(
            host=settings.db_host,
            port=settings.db_port,
            user=settings.db_user,
            password=settings.db_password,
            database=settings.db_name,
        )
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"bench: could not drop schemas {schemas}: {exc}", file=sys.stderr)


async def start_bank_handler(settings: BenchSettings) -> tuple[ServerProcess, int]:
    """The bank example's write handler, listening; the process and its port."""
    port = free_port()
    argv = [sys.executable, str(REPO_DIR / "examples" / "bank" / "handler.py")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    handler = ServerProcess("bank handler", argv, settings.log_dir / "handler.log")
    handler.start()
    try:
        await asyncio.to_thread(handler.wait_for_output, HANDLER_READY, 60.0)
    except BaseException:
        handler.stop(timeout=10)
        raise
    return handler, port


async def bench(settings: BenchSettings) -> list[Measurement]:
    """Runs the handler and each target in turn; the measurements in order."""
    print(f"logs in {settings.log_dir}", flush=True)
    handler, handler_port = await start_bank_handler(settings)
    measurements: list[Measurement] = []
    try:
        for name in settings.targets:
            measurements.append(await _measure_target(name, settings, handler, handler_port))
    finally:
        handler.stop(timeout=10)
    return measurements


async def _measure_target(
    name: str, settings: BenchSettings, handler: ServerProcess, handler_port: int
) -> Measurement:
    port = free_port()
    sink = OtlpSink(settings, name) if name in SAMPLING else None
    if name == "floor":
        schema = f"bench_floor_{uuid.uuid4().hex[:8]}"
        server = floor_process(settings, port, handler_port, schema)
    else:
        schema = f"bench_rt_{uuid.uuid4().hex[:8]}"
        env = sink.environment() if sink is not None else None
        server = runtime_process(settings, port, handler_port, schema, env, name=name)
    try:
        if sink is not None:
            await sink.start()
            print(f"{name}: OTLP sink on 127.0.0.1:{sink.port}", flush=True)
        return await measure(server, port, handler, settings, sink)
    finally:
        if sink is not None:
            sink.process.stop(timeout=10)
        if not settings.keep_schemas:
            await drop_schemas(settings, [schema])


def format_report(measurements: list[Measurement]) -> str:
    """The results table, detail lines per target, and the ratios between targets."""
    header = ("target", "commands", "cmd/s", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU s/1k cmd")
    lines = [*_table([header, *(_row(m) for m in measurements)]), ""]
    lines += [_details(m) for m in measurements]
    by_name = {m.name: m for m in measurements}
    ratios = []
    if {"runtime", "floor"} <= by_name.keys() and by_name["floor"].load.throughput:
        ratio = by_name["runtime"].load.throughput / by_name["floor"].load.throughput
        ratios.append(f"runtime/floor throughput ratio: {ratio:.2f}")
    ratios += _tracing_ratios(by_name)
    return "\n".join([*lines, "", *ratios] if ratios else lines)


def _tracing_ratios(by_name: dict[str, Measurement]) -> list[str]:
    """Each traced target against the runtime with tracing off, when both ran."""
    runtime = by_name.get("runtime")
    if runtime is None or not runtime.load.throughput:
        return []
    lines = []
    for name in (n for n in SAMPLING if n in by_name):
        throughput = by_name[name].load.throughput / runtime.load.throughput
        cpu = by_name[name].cpu_per_1k / runtime.cpu_per_1k if runtime.cpu_per_1k else math.nan
        lines.append(f"{name}/runtime: throughput {throughput:.2f}, CPU per 1k commands {cpu:.2f}")
    return lines


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as aligned lines: the first column to the left, the figures to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) for c, w in zip(row, widths, strict=True)]
        cells[0] = row[0].ljust(widths[0])
        lines.append("  ".join(cells))
    return lines


def _row(m: Measurement) -> tuple[str, ...]:
    load = m.load
    return (
        m.name,
        str(load.commands),
        f"{load.throughput:.1f}",
        f"{load.percentile_ms(0.50):.2f}",
        f"{load.percentile_ms(0.95):.2f}",
        f"{load.percentile_ms(0.99):.2f}",
        str(load.error_count),
        f"{m.cpu_per_1k:.3f}",
    )


def _details(m: Measurement) -> str:
    load, cpu = m.load, m.cpu
    top = ", ".join(f"{label} {seconds:.2f}" for label, seconds in cpu.top())
    first = [
        f"{m.name}: {load.window_seconds:.1f} s window; CPU {cpu.seconds:.2f} s"
        f" in {cpu.processes} processes ({top})",
        f"balances {m.balances_matched}/{len(load.balances)} match",
    ]
    if load.errors:
        first.append(f"errors {dict(load.errors)}")
    if load.warmup_errors:
        first.append(f"errors outside window {dict(load.warmup_errors)}")
    second = (
        f"  machine {m.machine_busy_cores:.2f} of {os.cpu_count()} cores busy; not counted:"
        f" bench client {m.client_cpu_seconds:.2f} s, handler {m.handler_cpu_seconds:.2f} s CPU"
    )
    if m.tracing is not None:
        second += f", OTLP sink {m.tracing.sink_cpu_seconds:.2f} s"
    tracing = [] if m.tracing is None else [_tracing_details(m.tracing, load.commands)]
    notes = [f"  {note}" for note in m.balance_problems[:3] + m.stop_notes]
    return "\n".join(["; ".join(first), second, *tracing, *notes])


def _tracing_details(tracing: TracingUse, commands: int) -> str:
    window, total = tracing.window, tracing.total
    names = sorted(window.by_name.items(), key=lambda item: (-item[1], item[0]))
    spread = ", ".join(f"{name} {count / commands:.2f}" for name, count in names if commands)
    return (
        f"  sampling {tracing.sampling:.0%}: the sink received {window.spans} spans in the window,"
        f" {tracing.per_command(commands):.2f} per command ({spread or 'none'});"
        f" {total.spans} in {total.trace_exports} exports in all"
    )


def _parse_args(argv: list[str] | None = None) -> BenchSettings:
    defaults = BenchSettings(log_dir=Path())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="calls in flight"
    )
    parser.add_argument(
        "--duration", type=float, default=defaults.duration, help="measured seconds"
    )
    parser.add_argument(
        "--warmup", type=float, default=defaults.warmup, help="unmeasured seconds first"
    )
    parser.add_argument(
        "--entities", type=int, default=defaults.entities, help="accounts to spread over"
    )
    parser.add_argument(
        "--only",
        type=_targets,
        action="append",
        help=f"targets to measure (repeatable or a comma list), of {', '.join(TARGETS)};"
        f" default {','.join(DEFAULT_TARGETS)}",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help=f"add the traced targets ({', '.join(SAMPLING)}) to the default or --only ones",
    )
    parser.add_argument("--db-host", default=defaults.db_host, help="PostgreSQL host")
    parser.add_argument("--db-port", type=int, default=defaults.db_port, help="PostgreSQL port")
    parser.add_argument("--db-user", default=defaults.db_user, help="PostgreSQL user")
    parser.add_argument("--db-password", help="PostgreSQL password (default: none, or PGPASSWORD)")
    parser.add_argument("--db-name", default=defaults.db_name, help="PostgreSQL database")
    parser.add_argument(
        "--num-shards", type=int, help="COS_NUM_SHARDS for the runtime (default: its own)"
    )
    parser.add_argument(
        "--floor-pool-size",
        type=int,
        default=defaults.floor_pool_size,
        help="floor's database connections",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=defaults.startup_timeout,
        help="seconds to wait for a target to answer",
    )
    parser.add_argument(
        "--keep-schemas", action="store_true", help="leave the run's schemas in the database"
    )
    args = vars(parser.parse_args(argv))
    chosen = {name for names in args.pop("only") or [DEFAULT_TARGETS] for name in names}
    if args.pop("tracing"):
        chosen |= SAMPLING.keys()
    args["targets"] = tuple(name for name in TARGETS if name in chosen)
    return replace(BenchSettings(), **args)


def _targets(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown target {unknown[0] if unknown else value!r}; choose from {TARGETS}"
        )
    return names


def _own_tracing_environment() -> list[str]:
    """Drops the OTEL_* variables of the bench's environment but OTEL_BSP_*, so that each
    target traces as its name says, whatever the shell had set; returns their names.
    OTEL_BSP_* (the batch span processor's queue, batch size and delay) still reach the
    traced targets, to try other settings."""
    dropped = [n for n in os.environ if n.startswith("OTEL_") and not n.startswith("OTEL_BSP_")]
    for name in dropped:
        del os.environ[name]
    return dropped


def _terminate(signum: int, frame: object) -> NoReturn:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so every finally stops its subprocess.
    raise KeyboardInterrupt


def main() -> None:
    """Parses the command line, runs the benchmark, prints the report."""
    settings = _parse_args()
    dropped = _own_tracing_environment()
    if dropped:
        print(f"bench: not passed on to the targets: {', '.join(sorted(dropped))}", flush=True)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        measurements = asyncio.run(bench(settings))
    except StartupError as exc:
        sys.exit(f"bench: {exc}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; servers stopped")
    print()
    print(format_report(measurements))


if __name__ == "__main__":
    main()
