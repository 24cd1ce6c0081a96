"""Fault runs: what each failure costs, checked against the journal.

A benchmark, not a test: it prints one table and passes no judgement (the fast cases are in
``tests/``). Each fault runs on real parts: ``cos serve`` processes, the test write handler
in its own process, PostgreSQL and, for head loss, ``ray start`` nodes. Under load, each
command adds a number of its own (a token) to its entity; afterwards the journal is read
back, so that per fault the table says:

- acknowledged: commands answered OK;
- lost: acknowledged tokens missing from the journal (must be 0);
- applied twice: tokens journaled more than once (must be 0);
- applied, caller saw an error: tokens journaled although their caller got an error (a crash
  or a database drop between commit and reply; retried, they would apply again);
- codes: the errors callers saw;
- recovered: seconds from the part's return (or the kill) to the next acknowledged command.

    .venv/bin/python bench/faults.py                 # every fault
    .venv/bin/python bench/faults.py --only crash db-outage-10s
    .venv/bin/python bench/faults.py --db-outage 60  # the long database outage too
"""

from __future__ import annotations

import os

# Before gRPC is imported (see cos/__init__.py): with gRPC's fork support on, a child forked
# to run pg_ctl as another user (pgserver does) can crash before it execs.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
from google.protobuf import struct_pb2
from rich import box
from rich.console import Console
from rich.table import Table

from chief_of_state.v1 import persistence_pb2, service_pb2, service_pb2_grpc
from cos.postgres import DatabaseTarget, EmbeddedPostgres, migrate
from tests.support.commands import request
from tests.support.database import db_env, drop_schema, find_database, new_schema_name
from tests.support.headloss import HeadCluster
from tests.support.processes import Process, free_port, start_write_handler
from tests.support.serve import COS, serve_env

Stub = service_pb2_grpc.ChiefOfStateServiceStub
# A command the database or the limits refuse, mixed into the load (by its token).
Poison = Callable[[int], service_pb2.ProcessCommandRequest]


@dataclass
class Ledger:
    """Commands, each adding a token of its own, sent by workers to random targets."""

    stubs: dict[str, Stub]
    entities: list[str] = field(default_factory=lambda: [f"f-{i}" for i in range(64)])
    poison: Poison | None = None
    acked: dict[int, str] = field(default_factory=dict)  # token -> entity
    failed: set[int] = field(default_factory=set)
    codes: Counter[str] = field(default_factory=Counter)
    poison_codes: Counter[str] = field(default_factory=Counter)
    oks: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, acked, entity)
    _next: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, workers: int = 16) -> None:
        self._tasks = [asyncio.create_task(self._work(random.Random(w))) for w in range(workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def recovered_after(self, since: float, timeout: float) -> float:
        """Seconds from ``since`` until a command sent after it is acknowledged (waits)."""
        deadline = time.monotonic() + timeout
        while True:
            after = [acked - since for sent, acked, _ in self.oks if sent > since]
            first = min(after, default=None)
            if first is not None:
                return first
            if time.monotonic() > deadline:
                raise TimeoutError(f"no acknowledged command within {timeout} s")
            await asyncio.sleep(0.1)

    async def _work(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            self._next += 1
            token = self._next
            stub = self.stubs[rng.choice(list(self.stubs))]
            if self.poison is not None and token % 5 == 0:
                try:
                    await stub.ProcessCommand(self.poison(token), timeout=10)
                    self.poison_codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    self.poison_codes[exc.code().name] += 1
                continue
            entity_id = rng.choice(self.entities)
            sent = time.monotonic()
            try:
                await stub.ProcessCommand(request(entity_id, add=[token]), timeout=10)
                self.acked[token] = entity_id
                self.oks.append((sent, time.monotonic(), entity_id))
            except grpc.aio.AioRpcError as exc:
                self.failed.add(token)
                self.codes[exc.code().name] += 1
                await asyncio.sleep(0.05)


@dataclass
class Row:
    fault: str
    acknowledged: int
    lost: int
    twice: int
    applied_on_error: int
    codes: str
    recovered: str


async def journal_tokens(target: DatabaseTarget) -> Counter[int]:
    """How many times each token is in the journal."""
    conn = await asyncpg.connect(**target.connect_kwargs())
    try:
        rows = await conn.fetch("SELECT payload FROM cos_journal")
    finally:
        await conn.close()
    found: Counter[int] = Counter()
    for row in rows:
        event = struct_pb2.Struct()
        persistence_pb2.EventWrapper.FromString(row["payload"]).event.Unpack(event)
        found[int(event["amount"])] += 1
    return found


async def row_of(
    fault: str, ledger: Ledger, target: DatabaseTarget, recovered: float | None
) -> Row:
    journaled = await journal_tokens(target)
    codes = ledger.codes + Counter({f"{k} (poison)": v for k, v in ledger.poison_codes.items()})
    return Row(
        fault,
        len(ledger.acked),
        sum(1 for token in ledger.acked if journaled[token] == 0),
        sum(1 for count in journaled.values() if count > 1),
        sum(1 for token in ledger.failed if journaled[token] > 0),
        ", ".join(f"{code} {n}" for code, n in sorted(codes.items())) or "none",
        "-" if recovered is None else f"{recovered:.1f} s",
    )


class Serve:
    """One ``cos serve`` (its own local Ray) and a client."""

    def __init__(self, env: dict[str, str], process: Process) -> None:
        self.env = env
        self.process = process
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{env['COS_PORT']}")
        self.stub = Stub(self.channel)

    @classmethod
    async def start(cls, env: dict[str, str]) -> Serve:
        def ready() -> Process:
            process = Process([*COS, "serve"], env=env)
            process.wait_for(r"cos serve ready", timeout=180)
            return process

        return cls(env, await asyncio.to_thread(ready))

    async def close(self) -> None:
        await self.channel.close()
        await asyncio.to_thread(self.process.stop)


@dataclass
class Bench:
    database: DatabaseTarget
    handler: int
    handler_process: Process
    load_seconds: float
    db_outage: list[float]

    def env(self, target: DatabaseTarget, **extra: str) -> dict[str, str]:
        return serve_env(self.handler, free_port(), **db_env(target), **extra)

    async def schema(self) -> DatabaseTarget:
        target = self.database.with_schema(new_schema_name())
        await migrate(target)
        return target

    async def poisoned(self, fault: str, poison: Poison) -> Row:
        target = await self.schema()
        serve = await Serve.start(self.env(target))
        try:
            ledger = Ledger({"n": serve.stub}, poison=poison)
            ledger.start()
            await asyncio.sleep(self.load_seconds * 2)
            await ledger.stop()
            return await row_of(fault, ledger, target, None)
        finally:
            await serve.close()
            await drop_schema(target)

    async def crash(self, times: int = 5) -> Row:
        target = await self.schema()
        env = self.env(target)
        serve = await Serve.start(env)
        ledger = Ledger({"n": serve.stub})
        ledger.start()
        worst = 0.0
        try:
            for _ in range(times):
                await asyncio.sleep(self.load_seconds)
                os.killpg(serve.process.proc.pid, signal.SIGKILL)
                killed = time.monotonic()
                # The old channel is closed only once no worker can pick it any more.
                dead, serve = serve, await Serve.start(env)
                ledger.stubs["n"] = serve.stub
                await dead.close()
                worst = max(worst, await ledger.recovered_after(killed, 120))
            await asyncio.sleep(self.load_seconds)
            await ledger.stop()
            return await row_of(f"cos serve SIGKILLed {times} times", ledger, target, worst)
        finally:
            await serve.close()
            await drop_schema(target)

    async def handler_outage(self, seconds: float) -> Row:
        target = await self.schema()
        handler, port = start_write_handler()

        def restart() -> None:
            nonlocal handler
            handler, _ = start_write_handler("--port", str(port))

        serve = await Serve.start(serve_env(port, free_port(), **db_env(target)))
        try:
            fault = f"write handler down {seconds:.0f} s"
            return await self.outage(fault, serve, target, handler.stop, seconds, restart, 60)
        finally:
            await serve.close()
            await asyncio.to_thread(handler.stop)
            await drop_schema(target)

    async def database_outage(self, seconds: float) -> Row:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="cos-faults-pg-")))
        target = DatabaseTarget.from_url(await asyncio.to_thread(server.start))
        await migrate(target)
        serve = await Serve.start(self.env(target))
        try:
            fault = f"PostgreSQL down {seconds:.0f} s"
            return await self.outage(fault, serve, target, server.stop, seconds, server.start, 120)
        finally:
            await serve.close()
            await asyncio.to_thread(server.stop)

    async def outage(
        self,
        fault: str,
        serve: Serve,
        target: DatabaseTarget,
        down: Callable[[], object],
        seconds: float,
        back: Callable[[], object],
        timeout: float,
    ) -> Row:
        """Load, then a part ``down`` for ``seconds`` and ``back``: recovered from its return."""
        ledger = Ledger({"n": serve.stub})
        ledger.start()
        await asyncio.sleep(self.load_seconds)
        await asyncio.to_thread(down)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(back)
        returned = time.monotonic()
        recovered = await ledger.recovered_after(returned, timeout)
        await asyncio.sleep(self.load_seconds)
        await ledger.stop()
        return await row_of(fault, ledger, target, recovered)

    async def head_loss(self, redis: bool) -> Row:
        target = await self.schema()
        # Blocking, on the loop: a cos serve's client channel belongs to it.
        cluster = HeadCluster.start(
            target,
            self.handler,
            redis=redis,
            failure_timeout=3.0,
            reconnect_timeout=20,
        )
        worker = cluster.serves["worker"]
        try:
            ledger = Ledger({"worker": worker.stub})
            ledger.start()
            await asyncio.sleep(self.load_seconds)
            await asyncio.to_thread(cluster.kill_head)
            killed = time.monotonic()
            await asyncio.sleep(12)  # past the takeover: every entity answers again
            if redis:
                back = cluster.restart_head()
                ledger.stubs["head"] = back.stub
            await asyncio.sleep(self.load_seconds)
            await ledger.stop()
            # Recovered: when commands of every entity, the head's shards' too, answer.
            recovered = _all_entities_after(ledger, killed)
            fault = "Ray head SIGKILLed, " + ("GCS on Redis, head back" if redis else "no Redis")
            return await row_of(fault, ledger, target, recovered)
        finally:
            for serve in cluster.serves.values():
                await serve.channel.close()
            await asyncio.to_thread(cluster.close)
            await drop_schema(target)


def _all_entities_after(ledger: Ledger, since: float) -> float | None:
    """Seconds from ``since`` until every entity had a command acknowledged again."""
    first: dict[str, float] = {}
    for sent, acked, entity_id in ledger.oks:
        if sent > since:
            first.setdefault(entity_id, acked)
    if set(first) != set(ledger.entities):
        return None
    return max(first.values()) - since


def _long_id(token: int) -> service_pb2.ProcessCommandRequest:
    return request("x" * 10_000 + str(token), add=[token])


def _nul_type(token: int) -> service_pb2.ProcessCommandRequest:
    return request(f"nul-{token % 8}", add=[token], type_url="type.googleapis.com/a\x00b")


def _oversized(token: int) -> service_pb2.ProcessCommandRequest:
    return request(f"big-{token % 8}", add=[token], state_bytes=5_000_000)


def faults(bench: Bench) -> dict[str, Callable[[], Awaitable[Row]]]:
    runs: dict[str, Callable[[], Awaitable[Row]]] = {
        "poison": lambda: bench.poisoned(
            "10 KB ids, and NUL in handler-made event types, 1 in 5", _mixed_poison
        ),
        "oversized": lambda: bench.poisoned("5 MB states, 1 in 5", _oversized),
        "handler-outage": lambda: bench.handler_outage(30),
        "crash": lambda: bench.crash(5),
        "head-loss-redis": lambda: bench.head_loss(redis=True),
        "head-loss": lambda: bench.head_loss(redis=False),
    }
    for seconds in bench.db_outage:
        runs[f"db-outage-{seconds:.0f}s"] = lambda s=seconds: bench.database_outage(s)
    return runs


def _mixed_poison(token: int) -> service_pb2.ProcessCommandRequest:
    return _long_id(token) if token % 2 else _nul_type(token)


def print_table(rows: list[Row]) -> None:
    table = Table(box=box.MARKDOWN)
    for column in (
        "fault",
        "acknowledged",
        "lost",
        "applied twice",
        "applied, caller saw an error",
        "errors callers saw",
        "recovered",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.fault,
            str(row.acknowledged),
            str(row.lost),
            str(row.twice),
            str(row.applied_on_error),
            row.codes,
            row.recovered,
        )
    Console(width=200).print(table)


async def main(database: DatabaseTarget) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="faults to run (default: all)")
    parser.add_argument("--load-seconds", type=float, default=5.0)
    parser.add_argument("--db-outage", type=float, nargs="*", default=[10.0])
    args = parser.parse_args()
    handler_process, handler = start_write_handler()
    bench = Bench(database, handler, handler_process, args.load_seconds, args.db_outage)
    runs = faults(bench)
    chosen = args.only or list(runs)
    unknown = [name for name in chosen if name not in runs]
    if unknown:
        parser.error(f"unknown faults {unknown}; known: {', '.join(runs)}")
    rows = []
    try:
        for name in chosen:
            print(f"running {name} …", file=sys.stderr, flush=True)
            rows.append(await runs[name]())
    finally:
        handler_process.stop()
    print_table(rows)
    return 0 if all(r.lost == 0 and r.twice == 0 for r in rows) else 1


if __name__ == "__main__":
    found, embedded = find_database()  # 127.0.0.1:5432, else an embedded PostgreSQL
    try:
        code = asyncio.run(main(found))
    finally:
        if embedded is not None:
            embedded.stop()
    sys.exit(code)
