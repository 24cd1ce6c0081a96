"""Hot entity: a burst of commands to one entity against its serial rate and against the
same burst spread over as many entities, on one `cos serve` with the bank example's handler.

For each pipeline depth asked for (``--depths 1,16``: ``COS_ENTITY_PIPELINE_DEPTH``; 1 is
no pipeline, each command waiting for the commit of the one before), a `cos serve` of its
own, and in it, ``--repeat`` times:

- **serial**: ``--serial`` deposits to one account, each sent when the one before was
  answered;
- **hot burst**: ``--burst`` deposits to one account, all sent at once;
- **spread burst**: ``--burst`` deposits, all at once, one to each of as many accounts.

Each figure is acknowledged commands per second from the first send to the last answer, and
the balances are read back (a burst that lost or doubled a deposit fails the run). Prints
the median of the repeats per depth and the two ratios the pipeline is for: hot burst over
serial (goal 3 or more) and hot burst over spread burst (goal 0.8 or more).

Run: ``python bench/hot.py [--depths 1,16] [--burst 1000] [--serial 200] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field

import grpc
from load import DEPOSIT_AMOUNT, bank_pb2, pack_command  # load puts bank.v1 on the path
from run import (
    BenchSettings,
    drop_schemas,
    free_port,
    runtime_process,
    start_bank_handler,
    wait_ready,
)

from chief_of_state.v1 import service_pb2, service_pb2_grpc

Stub = service_pb2_grpc.ChiefOfStateServiceStub
DEPOSIT = pack_command(bank_pb2.Deposit(amount=DEPOSIT_AMOUNT))


@dataclass
class Rates:
    """Commands per second of each kind of run, one figure per repeat."""

    serial: list[float] = field(default_factory=list)
    hot: list[float] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)


async def _send(stub: Stub, entity_id: str, command: object) -> None:
    request = service_pb2.ProcessCommandRequest(entity_id=entity_id, command=command)
    await stub.ProcessCommand(request, timeout=120)


async def _open(stub: Stub, entity_ids: list[str]) -> None:
    opening = pack_command(bank_pb2.OpenAccount(owner="bench", initial_balance=0))
    semaphore = asyncio.Semaphore(64)

    async def one(entity_id: str) -> None:
        async with semaphore:
            await _send(stub, entity_id, opening)

    await asyncio.gather(*(one(e) for e in entity_ids))


async def _balance(stub: Stub, entity_id: str) -> int:
    reply = await stub.GetState(service_pb2.GetStateRequest(entity_id=entity_id), timeout=30)
    account = bank_pb2.BankAccount()
    reply.state.Unpack(account)
    return int(account.balance)


async def _burst(stub: Stub, entity_ids: list[str]) -> float:
    """Deposits to ``entity_ids`` (one each, an id may repeat), all sent at once; the
    acknowledged rate. Every deposit must be acknowledged."""
    began = time.perf_counter()
    await asyncio.gather(*(_send(stub, e, DEPOSIT) for e in entity_ids))
    return len(entity_ids) / (time.perf_counter() - began)


async def _serial(stub: Stub, entity_id: str, count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        await _send(stub, entity_id, DEPOSIT)
    return count / (time.perf_counter() - began)


async def measure_depth(
    settings: BenchSettings, handler_port: int, depth: int, args: argparse.Namespace
) -> Rates:
    """One cos serve with ``COS_ENTITY_PIPELINE_DEPTH=depth``; the repeats' rates."""
    port, schema = free_port(), f"bench_hot_{uuid.uuid4().hex[:8]}"
    env = {"COS_ENTITY_PIPELINE_DEPTH": str(depth)}
    server = runtime_process(settings, port, handler_port, schema, env, name=f"depth-{depth}")
    target, rates = f"127.0.0.1:{port}", Rates()
    server.start()
    try:
        await wait_ready(server, target, settings.startup_timeout)
        async with grpc.aio.insecure_channel(target) as channel:
            stub = Stub(channel)
            for repeat in range(args.repeat):
                hot = f"hot-{repeat}"
                spread = [f"spread-{repeat}-{n}" for n in range(args.burst)]
                await _open(stub, [hot, *spread])
                await _serial(stub, hot, 20)  # warm: the entity in memory, channels open
                rates.serial.append(await _serial(stub, hot, args.serial))
                rates.hot.append(await _burst(stub, [hot] * args.burst))
                rates.spread.append(await _burst(stub, spread))
                expected = 20 + args.serial + args.burst
                found = await _balance(stub, hot)
                if found != expected:
                    sys.exit(f"bench: {hot} holds {found}, not {expected}: deposits lost")
                print(
                    f"depth {depth}, repeat {repeat + 1}: serial {rates.serial[-1]:.0f},"
                    f" hot burst {rates.hot[-1]:.0f}, spread burst {rates.spread[-1]:.0f} cmd/s",
                    flush=True,
                )
    finally:
        server.stop()
        await drop_schemas(settings, [schema])
    return rates


def report(by_depth: dict[int, Rates], burst: int, serial: int) -> str:
    """The medians per depth and the ratios."""
    header = f"{'depth':>5}  {'serial':>8}  {'hot burst':>9}  {'spread':>8}  hot/serial  hot/spread"
    lines = [f"cmd/s, median of the repeats; bursts of {burst}, {serial} serial", header]
    for depth, rates in by_depth.items():
        s, h, p = (statistics.median(x) for x in (rates.serial, rates.hot, rates.spread))
        lines.append(f"{depth:>5}  {s:>8.1f}  {h:>9.1f}  {p:>8.1f}  {h / s:>10.2f}  {h / p:>10.2f}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    settings = BenchSettings(num_shards=args.shards)
    print(f"logs in {settings.log_dir}", flush=True)
    handler, handler_port = await start_bank_handler(settings)
    try:
        by_depth = {d: await measure_depth(settings, handler_port, d, args) for d in args.depths}
    finally:
        handler.stop(timeout=10)
    print()
    print(report(by_depth, args.burst, args.serial))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--depths",
        type=lambda v: [int(d) for d in v.split(",")],
        default=[1, 16],
        help="COS_ENTITY_PIPELINE_DEPTH values, comma-separated (default 1,16)",
    )
    parser.add_argument("--burst", type=int, default=1000, help="commands in a burst")
    parser.add_argument("--serial", type=int, default=200, help="serial commands")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, per depth")
    parser.add_argument("--shards", type=int, default=None, help="COS_NUM_SHARDS")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_parse_args()))
