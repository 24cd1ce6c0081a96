"""How cost grows: throughput with more distinct accounts, and the same figures on journals
of several sizes.

For each count in ``--accounts``, a schema filled with that many opened accounts, one
``cos serve`` on it and bench/load.py's load spread over all of them (c=64, ``--duration``
seconds; with more accounts than the entity cache holds, most deposits find their account
cold): throughput and p50/p99, and every deposited account read back.

For each size in ``--sizes`` (events), a schema of its own filled by ``journal_fill.py``
(accounts of ``--events-per-account`` events each, a snapshot every 100 revisions, and one
account with ``--deep`` events and no snapshot), then one ``cos serve`` on it, freshly
started so that every account is cold:

- **cold GetState**: ``--samples`` accounts picked at random, each asked once, one after the
  other: p50 and p99 in ms (each is recovered from the journal: one row);
- **deep account**: the cold GetState of the account with ``--deep`` events since its
  snapshot (it has none);
- **catch-up**: a read side that starts paused, its offsets set ``--catch-up`` events short
  of the heads (spread over the shards), resumed: events per second until every offset is at
  its head;
- **bytes per event**: the journal table with its indexes, over its events.

Prints a table; the catch-up ratio of the largest size to the smallest is the figure to
watch (goal 0.9 or more: the rate does not fall as the journal grows).

Run: ``python bench/growth.py [--sizes 1000000,10000000] [--shards 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
import uuid

import asyncpg
import grpc
from catchup import READ_SIDE, _connect, _delivered, _set_paused
from journal_fill import fill
from load import LoadSettings, check_balances, run_load
from processes import ServerProcess
from readside_lag import BENCH_DIR, READER_READY
from run import (
    BenchSettings,
    drop_schemas,
    free_port,
    runtime_process,
    start_bank_handler,
    wait_ready,
)

from chief_of_state.v1 import service_pb2, service_pb2_grpc


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _cold_state_ms(stub: service_pb2_grpc.ChiefOfStateServiceStub, entity_id: str) -> float:
    began = time.perf_counter()
    await stub.GetState(service_pb2.GetStateRequest(entity_id=entity_id), timeout=30)
    return (time.perf_counter() - began) * 1000.0


async def _catch_up(db: asyncpg.Connection, behind: int, shards: int) -> float:
    """Set the paused read side ``behind`` events short of the heads; resume; events/s."""
    per_shard = behind // shards
    await db.execute(
        "UPDATE cos_read_side_offsets o SET position = greatest(l.last_position - $2, 0)"
        " FROM cos_shard_leases l WHERE o.shard = l.shard AND o.read_side_id = $1",
        READ_SIDE,
        per_shard,
    )
    start = await _delivered(db)
    heads = int(await db.fetchval("SELECT sum(last_position) FROM cos_shard_leases"))
    began = time.perf_counter()
    await _set_paused(db, False)
    while await _delivered(db) < heads:
        await asyncio.sleep(0.02)
    return (heads - start) / (time.perf_counter() - began)


def _filling(
    settings: BenchSettings,
    args: argparse.Namespace,
    schema: str,
    accounts: int,
    events: int,
    deep: int,
) -> argparse.Namespace:
    """journal_fill.py's arguments: ``accounts`` accounts, ``events`` events in all."""
    return argparse.Namespace(
        schema=schema,
        entities=accounts,
        events=events,
        shards=args.shards,
        snapshot_every=100,
        prefix="acct",
        deep=deep,
        db_host=settings.db_host,
        db_port=settings.db_port,
        db_user=settings.db_user,
        db_password=settings.db_password,
        db_name=settings.db_name,
    )


async def measure(
    settings: BenchSettings, args: argparse.Namespace, size: int, handler_port: int
) -> dict[str, float]:
    schema = f"bench_growth_{uuid.uuid4().hex[:8]}"
    accounts = max(1, size // args.events_per_account)
    fill_args = _filling(settings, args, schema, accounts, size, args.deep)
    reader_port, port = free_port(), free_port()
    reader_argv = [sys.executable, str(BENCH_DIR / "lag_reader.py"), "--port", str(reader_port)]
    reader = ServerProcess(
        "read handler", [*reader_argv, "--out", "/dev/null"], settings.log_dir / "reader.log"
    )
    env = {
        "COS_READ_SIDE_ENABLED": "true",
        f"COS_READ_SIDE_CONFIG__HOST__{READ_SIDE}": "127.0.0.1",
        f"COS_READ_SIDE_CONFIG__PORT__{READ_SIDE}": str(reader_port),
        f"COS_READ_SIDE_CONFIG__AUTO_START__{READ_SIDE}": "false",
    }
    server = runtime_process(settings, port, handler_port, schema, env, name=f"growth-{size}")
    figures: dict[str, float] = {}
    try:
        await fill(fill_args)
        reader.start()
        await asyncio.to_thread(reader.wait_for_output, READER_READY, 60.0)
        server.start()
        await wait_ready(server, f"127.0.0.1:{port}", 300.0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
            picked = random.Random(size).sample(range(accounts), min(args.samples, accounts))
            cold = [await _cold_state_ms(stub, f"acct-{n}") for n in picked]
            figures["cold p50 ms"] = _percentile(cold, 0.50)
            figures["cold p99 ms"] = _percentile(cold, 0.99)
            figures["deep ms"] = await _cold_state_ms(stub, "acct-deep")
        db = await _connect(settings, schema)
        try:
            figures["catch-up ev/s"] = await _catch_up(db, args.catch_up, args.shards)
            events = int(await db.fetchval("SELECT sum(last_position) FROM cos_shard_leases"))
            size_bytes = await db.fetchval("SELECT pg_total_relation_size('cos_journal')")
            figures["bytes/event"] = size_bytes / events
        finally:
            await db.close()
    finally:
        server.stop()
        reader.stop(timeout=10)
        await drop_schemas(settings, [schema])
    return figures


async def throughput(
    settings: BenchSettings, args: argparse.Namespace, accounts: int, handler_port: int
) -> dict[str, float]:
    """bench/load.py's load over ``accounts`` accounts that exist already (one event each):
    throughput and p99, and the deposits read back."""
    schema, port = f"bench_growth_{uuid.uuid4().hex[:8]}", free_port()
    fill_args = _filling(settings, args, schema, accounts, accounts, 0)
    server = runtime_process(settings, port, handler_port, schema, name=f"accounts-{accounts}")
    target = f"127.0.0.1:{port}"
    try:
        await fill(fill_args)
        server.start()
        await wait_ready(server, target, 300.0)
        load = LoadSettings(
            target,
            duration=args.duration,
            entities=accounts,
            id_prefix="acct",
            opened_balance=0,
        )
        result = await run_load(load)
        touched = {e: b for e, b in result.balances.items() if b}
        matched, problems = await check_balances(target, touched)
        if problems:
            raise SystemExit(f"bench: deposits lost or doubled: {problems[:5]}")
    finally:
        server.stop()
        await drop_schemas(settings, [schema])
    return {
        "cmd/s": result.throughput,
        "p50 ms": result.percentile_ms(0.50),
        "p99 ms": result.percentile_ms(0.99),
        "errors": float(result.error_count),
        "accounts used": float(matched),
    }


def _table(title: str, rows: dict[int, dict[str, float]]) -> None:
    names = list(next(iter(rows.values())))
    print(f"{title:>14}  " + "  ".join(f"{n:>13}" for n in names))
    for size, figures in rows.items():
        print(f"{size:>14}  " + "  ".join(f"{figures[n]:>13.1f}" for n in names))


async def main(args: argparse.Namespace) -> None:
    settings = BenchSettings(num_shards=args.shards)
    print(f"logs in {settings.log_dir}", flush=True)
    handler, handler_port = await start_bank_handler(settings)
    rows: dict[int, dict[str, float]] = {}
    by_accounts: dict[int, dict[str, float]] = {}
    try:
        for accounts in args.accounts:
            by_accounts[accounts] = await throughput(settings, args, accounts, handler_port)
            print(f"{accounts} accounts: {by_accounts[accounts]}", flush=True)
        for size in args.sizes:
            rows[size] = await measure(settings, args, size, handler_port)
            print(f"{size} events: {rows[size]}", flush=True)
    finally:
        handler.stop(timeout=10)
    print()
    if by_accounts:
        _table("accounts", by_accounts)
        fewest, most = by_accounts[min(by_accounts)], by_accounts[max(by_accounts)]
        ratio = most["cmd/s"] / fewest["cmd/s"]
        print(f"throughput, most accounts / fewest: {ratio:.2f}")
        print()
    if not rows:
        return
    _table("journal events", rows)
    if len(rows) > 1:
        smallest, largest = rows[min(rows)], rows[max(rows)]
        ratio = largest["catch-up ev/s"] / smallest["catch-up ev/s"]
        print(f"catch-up rate, largest journal / smallest: {ratio:.2f}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda v: [int(s) for s in v.split(",") if s],
        default=[1_000_000, 10_000_000],
        help="journal sizes in events, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--accounts",
        type=lambda v: [int(s) for s in v.split(",") if s],
        default=[1000, 100_000, 1_000_000],
        help="distinct accounts of the throughput runs, comma-separated ('' for none)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each load")
    parser.add_argument("--shards", type=int, default=8, help="COS_NUM_SHARDS")
    parser.add_argument("--events-per-account", type=int, default=10)
    parser.add_argument("--deep", type=int, default=10_000, help="events of the deep account")
    parser.add_argument("--samples", type=int, default=1000, help="cold GetState calls")
    parser.add_argument("--catch-up", type=int, default=20_000, help="events to catch up")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_parse_args()))
