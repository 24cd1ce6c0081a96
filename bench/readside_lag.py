"""Read-side lag: time from a command's commit to its ``HandleReadSide`` call.

1. Starts the bank write handler, ``bench/lag_reader.py`` and ``cos serve`` with one
   read side pointing at the reader.
2. Measures the maximum command rate: the closed-loop load of ``bench/load.py``.
3. Waits until the read side has caught up, then sends commands open-loop at half
   that rate (``--fraction``) for ``--duration`` seconds.
4. Prints p50/p95/p99/max lag of the events written during step 3.

Run: ``python bench/readside_lag.py [--duration 15 --concurrency 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from load import LoadSettings, bank_pb2, pack_command, run_load
from processes import ServerProcess
from run import (
    HANDLER_READY,
    REPO_DIR,
    BenchSettings,
    drop_schemas,
    free_port,
    runtime_process,
    wait_ready,
)

from chief_of_state.v1 import service_pb2, service_pb2_grpc

BENCH_DIR = Path(__file__).resolve().parent
READER_READY = "lag reader listening on"


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


async def wait_caught_up(out: Path, quiet: float = 2.0, timeout: float = 300.0) -> None:
    """Until the reader got nothing new for ``quiet`` seconds."""
    deadline, count, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        now_count = len(_lines(out))
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the read side did not catch up")


async def paced(target: str, rate: float, duration: float, prefix: str, entities: int) -> int:
    """Open-loop deposits at ``rate`` per second over ``entities`` accounts; how many were sent."""
    ids = [f"{prefix}-{i}" for i in range(entities)]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        open_account = pack_command(bank_pb2.OpenAccount(owner="lag", initial_balance=0))
        for chunk in range(0, entities, 64):
            await asyncio.gather(
                *(
                    stub.ProcessCommand(
                        service_pb2.ProcessCommandRequest(entity_id=e, command=open_account)
                    )
                    for e in ids[chunk : chunk + 64]
                )
            )
        deposit = pack_command(bank_pb2.Deposit(amount=1))
        calls: list[asyncio.Task[object]] = []
        start = time.perf_counter()
        sent = 0
        while time.perf_counter() - start < duration:
            request = service_pb2.ProcessCommandRequest(
                entity_id=ids[sent % entities], command=deposit
            )
            calls.append(asyncio.ensure_future(stub.ProcessCommand(request, timeout=30)))
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        await asyncio.gather(*calls, return_exceptions=True)
    return sent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def main(args: argparse.Namespace) -> None:
    settings = BenchSettings(log_dir=Path(tempfile.mkdtemp(prefix="cos-lag-")))
    out = settings.log_dir / "lag.txt"
    handler_port, reader_port, port = free_port(), free_port(), free_port()
    handler = ServerProcess(
        "bank handler",
        [sys.executable, str(REPO_DIR / "examples/bank/handler.py"), "--port", str(handler_port)],
        settings.log_dir / "handler.log",
    )
    reader = ServerProcess(
        "lag reader",
        [
            sys.executable,
            str(BENCH_DIR / "lag_reader.py"),
            "--port",
            str(reader_port),
            "--out",
            str(out),
        ],
        settings.log_dir / "reader.log",
    )
    schema = f"bench_lag_{uuid.uuid4().hex[:8]}"
    env = {
        "COS_READ_SIDE_ENABLED": "true",
        "COS_READ_SIDE_CONFIG__HOST__lag": "127.0.0.1",
        "COS_READ_SIDE_CONFIG__PORT__lag": str(reader_port),
    }
    server = runtime_process(settings, port, handler_port, schema, env)
    target = f"127.0.0.1:{port}"
    try:
        handler.start()
        reader.start()
        await asyncio.to_thread(handler.wait_for_output, HANDLER_READY, 60.0)
        await asyncio.to_thread(reader.wait_for_output, READER_READY, 60.0)
        server.start()
        await wait_ready(server, target, 120.0)
        load = LoadSettings(target, concurrency=args.concurrency, duration=args.duration)
        maximum = (await run_load(load)).throughput
        print(f"maximum rate (closed loop, concurrency {args.concurrency}): {maximum:.1f} cmd/s")
        await wait_caught_up(out)
        rate = maximum * args.fraction
        began = time.time()
        sent = await paced(
            target, rate, args.duration, f"lag-{uuid.uuid4().hex[:6]}", args.entities
        )
        await wait_caught_up(out)
        # Deposits only (revision > 1): the accounts are opened in a burst before pacing.
        deposits = [
            float(f[1])
            for f in _lines(out)
            if float(f[0]) >= began and f[2].startswith("lag-") and int(f[3]) > 1
        ]
        print(
            f"paced at {rate:.1f} cmd/s ({args.fraction:.0%} of maximum): {sent} commands, "
            f"{len(deposits)} events delivered"
        )
        print(
            "read-side lag ms: "
            + "  ".join(f"p{int(q * 100)} {percentile(deposits, q):.1f}" for q in (0.5, 0.95, 0.99))
            + f"  max {max(deposits):.1f}"
        )
    finally:
        server.stop()
        reader.stop(timeout=10)
        handler.stop(timeout=10)
        await drop_schemas(settings, [schema])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the maximum rate")
    parser.add_argument("--entities", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
