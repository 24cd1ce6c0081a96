"""Read-side catch-up: a paused read side resumed over a backlog, against the same
``HandleReadSide`` calls made straight to the read handler by one sequential caller per shard.

1. Starts the bank write handler, a read handler (``bench/lag_reader.py``, writing nothing)
   and ``cos serve`` with one read side that starts paused (``autoStart: false``).
2. Fills the journal with ``--events`` deposits through the API (bench/load.py's load).
3. **Runtime**: resumes the read side (as ``cos-cli readside resume`` does: the offset rows
   and a ``NOTIFY``) and times it until every shard's stored offset is the shard's last
   position.
4. **Bare caller**: reads the same events from the journal beforehand, then, per shard, one
   caller sends each event's ``HandleReadSide`` (the request and headers the runtime sends)
   and waits for the answer before the next; the shards' callers run side by side. This is
   the handler's own speed, with nothing of the runtime in the way.

Prints both rates and their ratio (goal: 0.95 or more), the median of ``--repeat`` runs of
each (the runtime's offsets are set back to 0, paused, between its runs).

Run: ``python bench/catchup.py [--events 20000] [--shards 8] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid

import asyncpg
import grpc
from load import LoadSettings, run_groups
from processes import ServerProcess
from readside_lag import BENCH_DIR, READER_READY
from run import (
    HANDLER_READY,
    REPO_DIR,
    BenchSettings,
    drop_schemas,
    free_port,
    runtime_process,
    wait_ready,
)

from chief_of_state.v1 import persistence_pb2, readside_pb2, readside_pb2_grpc

READ_SIDE = "catchup"
_SET_PAUSED = """
UPDATE cos_read_side_offsets SET paused = $2, position = CASE WHEN $3 THEN 0 ELSE position END
WHERE read_side_id = $1;
"""


async def _connect(settings: BenchSettings, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password,
        database=settings.db_name,
        server_settings={"search_path": schema},
    )


async def _journal_events(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT coalesce(sum(last_position), 0) FROM cos_shard_leases"))


async def _delivered(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            "SELECT coalesce(sum(position), 0) FROM cos_read_side_offsets WHERE read_side_id = $1",
            READ_SIDE,
        )
    )


async def _set_paused(db: asyncpg.Connection, paused: bool, *, rewind: bool = False) -> None:
    async with db.transaction():
        await db.execute(_SET_PAUSED, READ_SIDE, paused, rewind)
        await db.execute("SELECT pg_notify('cos_read_side_control', $1)", READ_SIDE)


async def runtime_catch_up(db: asyncpg.Connection, events: int) -> float:
    """Resume the paused read side; events per second until every offset is at its head."""
    began = time.perf_counter()
    await _set_paused(db, False)
    while await _delivered(db) < events:
        await asyncio.sleep(0.02)
    return events / (time.perf_counter() - began)


async def bare_catch_up(db: asyncpg.Connection, reader: str) -> float:
    """The same calls, one sequential caller per shard; events per second."""
    rows = await db.fetch("SELECT shard, payload FROM cos_journal ORDER BY shard, position")
    by_shard: dict[int, list[tuple[readside_pb2.HandleReadSideRequest, tuple]]] = {}
    for row in rows:
        wrapper = persistence_pb2.EventWrapper.FromString(row["payload"])
        request = readside_pb2.HandleReadSideRequest(
            event=wrapper.event,
            state=wrapper.resulting_state,
            meta=wrapper.meta,
            read_side_id=READ_SIDE,
        )
        headers = (
            ("x-cos-entity-id", wrapper.meta.entity_id),
            ("x-cos-event-tag", str(row["shard"])),
        )
        by_shard.setdefault(row["shard"], []).append((request, headers))
    async with grpc.aio.insecure_channel(reader) as channel:
        stub = readside_pb2_grpc.ReadSideHandlerServiceStub(channel)

        async def caller(calls: list[tuple[readside_pb2.HandleReadSideRequest, tuple]]) -> None:
            for request, headers in calls:
                reply = await stub.HandleReadSide(request, timeout=30, metadata=headers)
                if not reply.successful:
                    sys.exit("bench: the read handler refused an event")

        await stub.HandleReadSide(by_shard[min(by_shard)][0][0], timeout=30)  # connected
        began = time.perf_counter()
        await asyncio.gather(*(caller(calls) for calls in by_shard.values()))
        return len(rows) / (time.perf_counter() - began)


async def main(args: argparse.Namespace) -> None:
    settings = BenchSettings(num_shards=args.shards)
    print(f"logs in {settings.log_dir}", flush=True)
    handler_port, reader_port, port = free_port(), free_port(), free_port()
    handler = ServerProcess(
        "bank handler",
        [sys.executable, str(REPO_DIR / "examples/bank/handler.py"), "--port", str(handler_port)],
        settings.log_dir / "handler.log",
    )
    reader_argv = [sys.executable, str(BENCH_DIR / "lag_reader.py"), "--port", str(reader_port)]
    reader = ServerProcess(
        "read handler", [*reader_argv, "--out", "/dev/null"], settings.log_dir / "reader.log"
    )
    schema = f"bench_catchup_{uuid.uuid4().hex[:8]}"
    env = {
        "COS_READ_SIDE_ENABLED": "true",
        f"COS_READ_SIDE_CONFIG__HOST__{READ_SIDE}": "127.0.0.1",
        f"COS_READ_SIDE_CONFIG__PORT__{READ_SIDE}": str(reader_port),
        f"COS_READ_SIDE_CONFIG__AUTO_START__{READ_SIDE}": "false",
    }
    server = runtime_process(settings, port, handler_port, schema, env)
    target = f"127.0.0.1:{port}"
    runtime_rates: list[float] = []
    bare_rates: list[float] = []
    try:
        handler.start()
        reader.start()
        await asyncio.to_thread(handler.wait_for_output, HANDLER_READY, 60.0)
        await asyncio.to_thread(reader.wait_for_output, READER_READY, 60.0)
        server.start()
        await wait_ready(server, target, 120.0)
        db = await _connect(settings, schema)
        try:
            load = LoadSettings(target, concurrency=64, warmup=0.0, entities=1000)

            async def filled() -> None:
                while await _journal_events(db) < args.events:
                    await asyncio.sleep(0.2)

            owned = [load.entity_ids(w) for w in range(load.concurrency)]
            await run_groups(load, {"fill": owned}, until=filled)
            events = await _journal_events(db)
            print(f"journal: {events} events in {args.shards} shards", flush=True)
            for repeat in range(args.repeat):
                runtime_rates.append(await runtime_catch_up(db, events))
                await _set_paused(db, True, rewind=True)
                bare_rates.append(await bare_catch_up(db, f"127.0.0.1:{reader_port}"))
                print(
                    f"repeat {repeat + 1}: runtime {runtime_rates[-1]:.0f},"
                    f" bare caller {bare_rates[-1]:.0f} events/s",
                    flush=True,
                )
        finally:
            await db.close()
    finally:
        server.stop()
        reader.stop(timeout=10)
        handler.stop(timeout=10)
        await drop_schemas(settings, [schema])
    runtime, bare = statistics.median(runtime_rates), statistics.median(bare_rates)
    print()
    print(f"catch-up over {events} events, median of {args.repeat}:")
    print(f"  runtime      {runtime:8.1f} events/s")
    print(f"  bare caller  {bare:8.1f} events/s")
    print(f"  runtime/bare {runtime / bare:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="backlog to catch up")
    parser.add_argument("--shards", type=int, default=8, help="COS_NUM_SHARDS")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each")
    asyncio.run(main(parser.parse_args()))
