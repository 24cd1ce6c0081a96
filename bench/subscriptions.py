"""Subscription fan-out: events/s delivered to 1, 10 and 100 SubscribeAll streams, and the
command throughput meanwhile, against the same runtime without subscribers and against a
runtime with subscriptions off (what the NOTIFY in the append costs), in one run.

1. Starts the bank write handler and ``cos serve`` with ``COS_SUBSCRIPTION_ENABLED=false``;
   measures the closed-loop load of bench/load.py; stops it.
2. Starts ``cos serve`` with subscriptions on; measures the load with no subscriber, then
   with 1, 10 and 100 streams opened ``from_now`` by a reader process of its own
   (``--reader``, so the streams' client CPU is not the load's), which logs its running
   total every 0.1 s. Events/s delivered is the growth of that total over the window.
3. The same with ``COS_SUBSCRIPTION_PORT``: the streams are read from the node's
   subscription process.

Run: ``python bench/subscriptions.py [--duration 15 --concurrency 64 --fan-out 1,10,100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from load import LoadResult, LoadSettings, run_load
from processes import ServerProcess
from run import (
    HANDLER_READY,
    REPO_DIR,
    BenchSettings,
    _free_port,
    drop_schemas,
    runtime_process,
    wait_ready,
)

from cos.v1 import subscription_pb2, subscription_pb2_grpc

READER_READY = "subscription reader ready"


async def reader(target: str, streams: int, out: Path) -> None:
    """Open ``streams`` SubscribeAll streams from now; log ``<time> <total>`` every 0.1 s."""
    total = 0

    async def consume(call: Any) -> None:
        nonlocal total
        async for _ in call:
            total += 1

    async with grpc.aio.insecure_channel(target) as channel:
        stub = subscription_pb2_grpc.SubscriptionServiceStub(channel)
        start = subscription_pb2.SubscribeAllRequest(from_now=True)
        calls = [stub.SubscribeAll(start) for _ in range(streams)]
        await asyncio.gather(*(call.initial_metadata() for call in calls))
        tasks = [asyncio.create_task(consume(call)) for call in calls]
        print(READER_READY, flush=True)
        with out.open("w") as log:
            while True:
                log.write(f"{time.time()} {total}\n")
                log.flush()
                await asyncio.sleep(0.1)
                if any(task.done() for task in tasks):
                    raise SystemExit("a stream ended")


def delivered_between(out: Path, began: float, ended: float) -> int:
    """Events the reader had received by ``ended`` minus those by ``began``."""
    rows = [tuple(map(float, line.split())) for line in out.read_text().splitlines() if line]

    def at(moment: float) -> float:
        return max((total for when, total in rows if when <= moment), default=0.0)

    return int(at(ended) - at(began))


async def measured(settings: LoadSettings) -> tuple[LoadResult, float, float]:
    window: dict[str, float] = {}
    result = await run_load(
        settings,
        on_window_start=lambda: window.__setitem__("began", time.time()),
        on_window_end=lambda: window.__setitem__("ended", time.time()),
    )
    return result, window["began"], window["ended"]


def row(name: str, result: LoadResult, delivered: float | None) -> str:
    latencies = sorted(result.latencies_ms)
    p50 = latencies[len(latencies) // 2] if latencies else 0.0
    events = "-" if delivered is None else f"{delivered:,.0f}"
    return f"{name:<40} {result.throughput:>9.1f} {p50:>9.1f} {events:>14}  {result.error_count}"


async def main(args: argparse.Namespace) -> None:
    settings = BenchSettings(log_dir=Path(tempfile.mkdtemp(prefix="cos-subs-")))
    handler_port = _free_port()
    handler = ServerProcess(
        "bank handler",
        [sys.executable, str(REPO_DIR / "examples/bank/handler.py"), "--port", str(handler_port)],
        settings.log_dir / "handler.log",
    )
    schemas: list[str] = []
    rows: list[str] = []
    handler.start()
    try:
        await asyncio.to_thread(handler.wait_for_output, HANDLER_READY, 60.0)
        for mode in ("off", "on", "process"):
            port, schema = _free_port(), f"bench_subs_{uuid.uuid4().hex[:8]}"
            schemas.append(schema)
            env = {"COS_SUBSCRIPTION_ENABLED": "false" if mode == "off" else "true"}
            streams_port = port
            if mode == "process":
                streams_port = _free_port()
                env["COS_SUBSCRIPTION_PORT"] = str(streams_port)
            name = f"subscriptions-{mode}"
            server = runtime_process(settings, port, handler_port, schema, env, name=name)
            server.start()
            target = f"127.0.0.1:{port}"
            try:
                await wait_ready(server, target, 120.0)
                fan_outs = [0] if mode == "off" else [0, *args.fan_out]
                for streams in fan_outs:
                    reader_target = f"127.0.0.1:{streams_port}"
                    rows.append(await phase(args, settings, target, reader_target, name, streams))
                    print(rows[-1], flush=True)
            finally:
                server.stop()
    finally:
        handler.stop(timeout=10)
        await drop_schemas(settings, schemas)
    print(f"\n{'target':<40} {'cmd/s':>9} {'p50 ms':>9} {'events/s out':>14}  errors")
    print("\n".join(rows))


async def phase(
    args: argparse.Namespace,
    settings: BenchSettings,
    target: str,
    reader_target: str,
    name: str,
    streams: int,
) -> str:
    load = LoadSettings(
        target, concurrency=args.concurrency, duration=args.duration, entities=args.entities
    )
    if streams == 0:
        result, _, _ = await measured(load)
        return row(f"{name}, no subscriber", result, None)
    out = settings.log_dir / f"reader-{streams}.txt"
    process = ServerProcess(
        f"reader-{streams}",
        [
            sys.executable,
            __file__,
            "--reader",
            str(streams),
            "--target",
            reader_target,
            "--out",
            str(out),
            "--nice",
            str(args.reader_nice),
        ],
        settings.log_dir / f"reader-{streams}.log",
    )
    process.start()
    try:
        await asyncio.to_thread(process.wait_for_output, READER_READY, 120.0)
        result, began, ended = await measured(load)
        await asyncio.sleep(0.3)  # the reader's log line after the window
        delivered = delivered_between(out, began, ended) / (ended - began)
    finally:
        process.stop(timeout=10)
    return row(f"{name}, {streams} SubscribeAll", result, delivered)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument(
        "--fan-out", type=lambda text: [int(n) for n in text.split(",")], default=[1, 10, 100]
    )
    parser.add_argument(
        "--reader-nice",
        type=int,
        default=0,
        help="run the streams' reader process at this nice value (it stands for clients on"
        " other machines)",
    )
    parser.add_argument("--nice", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--reader", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.reader:
        os.nice(parsed.nice)
        asyncio.run(reader(parsed.target, parsed.reader, parsed.out))
    else:
        asyncio.run(main(parsed))
