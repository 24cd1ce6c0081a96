"""Every part can fail and come back: the database, the write handler, cos serve itself
(real PostgreSQL, Ray and handler processes)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf import struct_pb2

from chief_of_state.v1 import persistence_pb2, service_pb2_grpc
from cos.postgres import DatabaseTarget, EmbeddedPostgres, migrate
from cos.runtime import start_runtime
from tests.support.commands import request, state_of
from tests.support.database import db_env
from tests.support.processes import Process, free_port, start_write_handler
from tests.support.readsides import Reader, start_reader
from tests.support.runtimes import StartRuntime
from tests.support.serve import COS, cos_settings, serve_env
from tests.support.waiting import wait_until

__all__ = ["start_reader"]  # the fixture, for pytest


def amount_of(payload: bytes) -> float:
    """The amount of the test handler's event in a journal row's ``EventWrapper``."""
    event = struct_pb2.Struct()
    persistence_pb2.EventWrapper.FromString(payload).event.Unpack(event)
    return float(event["amount"])


Code = grpc.StatusCode


async def test_a_write_handler_back_from_an_outage_is_used_at_once(
    start_cos: StartRuntime,
) -> None:
    port = free_port()
    handler, _ = start_write_handler("--port", str(port))
    try:
        cos = await start_cos(write_side_port=port)
        await cos.stub.ProcessCommand(request("back", add=[1]))
        handler.stop()
        # While it is down, every failed connection makes gRPC back off longer.
        for _ in range(10):
            with pytest.raises(grpc.aio.AioRpcError) as down:
                await cos.stub.ProcessCommand(request("back", add=[1]))
            assert down.value.code() == Code.UNAVAILABLE
            await asyncio.sleep(0.4)
        handler, _ = start_write_handler("--port", str(port))
        started = time.monotonic()
        reply = await cos.stub.ProcessCommand(request("back", add=[1]))  # the first try
        print(f"first command after the handler's return took {time.monotonic() - started:.2f} s")
        assert reply.meta.revision_number == 2
    finally:
        handler.stop()


@pytest.fixture
async def own_database() -> AsyncIterator[tuple[DatabaseTarget, EmbeddedPostgres]]:
    """A PostgreSQL of the test's own, which it may stop and start. Its folder is not under
    pytest's temporary folder: run as root, pgserver runs PostgreSQL as another user and
    opens the folders above the data for it, and any pytest session that starts meanwhile
    closes pytest's folder again (0700), so PostgreSQL could no longer be stopped."""
    folder = Path(tempfile.mkdtemp(prefix="cos-pg-"))
    server = EmbeddedPostgres(folder / "pg")
    target = DatabaseTarget.from_url(await asyncio.to_thread(server.start))
    await migrate(target)
    yield target, server
    await asyncio.to_thread(server.stop)
    shutil.rmtree(folder, ignore_errors=True)


async def test_a_database_restart_gives_unavailable_and_the_listen_comes_back(
    ray_session: None,
    own_database: tuple[DatabaseTarget, EmbeddedPostgres],
    write_handler: int,
    start_reader: Callable[..., Reader],
) -> None:
    target, server = own_database
    reader = start_reader("rs-restart")
    settings = cos_settings(
        write_side_host="127.0.0.1",
        write_side_port=write_handler,
        address="127.0.0.1",
        port=free_port(),
        advertise_address="127.0.0.1",
        cluster_name=f"t{uuid.uuid4().hex[:10]}",
        num_shards=1,
        read_side_enabled=True,
        read_sides=(reader.config(),),
        read_side_retry_min_seconds=0.05,
        read_side_retry_max_seconds=0.5,
    )
    runtime = await asyncio.to_thread(start_runtime, settings, target)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.server.port}")
    stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
    try:
        await stub.ProcessCommand(request("db-1", add=[1]))
        codes: Counter[str] = Counter()
        stop = asyncio.Event()

        async def load() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    await stub.ProcessCommand(request(f"db-{i % 5}", add=[1]), timeout=10)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                    await asyncio.sleep(0.02)

        running = asyncio.create_task(load())
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(server.start)
        ok_before = codes["OK"]
        await wait_until(lambda: codes["OK"] > ok_before + 5, what="commands after the restart")
        stop.set()
        await running
        assert set(codes) <= {"OK", "UNAVAILABLE"}, codes  # never INTERNAL
        assert codes["UNAVAILABLE"] > 0, codes
        # An operator change made through another node after the restart (its NOTIFY)
        # reaches this node's runner: the LISTEN connection is back.
        await wait_until(lambda: len(reader.delivered()) >= 1, what="deliveries")
        conn = await asyncpg.connect(**target.connect_kwargs())
        try:

            async def notified_restart() -> bool:
                await conn.execute(
                    "UPDATE cos_read_side_offsets SET position = 0"
                    " WHERE read_side_id = 'rs-restart';"
                    " SELECT pg_notify('cos_read_side_control', 'rs-restart')"
                )
                await asyncio.sleep(0.5)
                return ("db-1", 1) in reader.delivered()[1:]

            delivered_before = len(reader.delivered())
            await wait_until(notified_restart, timeout=30, what="the runner to hear the change")
            assert len(reader.delivered()) > delivered_before
        finally:
            await conn.close()
    finally:
        await channel.close()
        await asyncio.to_thread(runtime.stop)


async def test_a_database_restart_in_a_burst_on_one_entity_loses_and_doubles_nothing(
    ray_session: None,
    own_database: tuple[DatabaseTarget, EmbeddedPostgres],
    write_handler: int,
) -> None:
    """1,000 commands to one entity, 64 in flight at any time, its commands pipelined,
    and PostgreSQL restarted while they run: the journal has no gap and no command twice,
    every acknowledged command is in it, and each reply is the state of the journal up to
    its revision (acknowledged in journal order)."""
    target, server = own_database
    settings = cos_settings(
        write_side_host="127.0.0.1",
        write_side_port=write_handler,
        address="127.0.0.1",
        port=free_port(),
        advertise_address="127.0.0.1",
        cluster_name=f"t{uuid.uuid4().hex[:10]}",
        num_shards=1,
    )
    runtime = await asyncio.to_thread(start_runtime, settings, target)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.server.port}")
    stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
    acked: dict[int, tuple[int, float]] = {}  # amount -> (revision, total in the reply)
    codes: Counter[str] = Counter()
    amounts = iter(range(1, 1001))

    async def client() -> None:
        for amount in amounts:
            try:
                reply = await stub.ProcessCommand(request("hot", add=[amount]), timeout=60)
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
                await asyncio.sleep(0.05)  # backs off, as a client does
            else:
                codes["OK"] += 1
                acked[amount] = (reply.meta.revision_number, state_of(reply)["total"])

    try:
        burst = asyncio.gather(*(client() for _ in range(64)))
        await wait_until(lambda: codes["OK"] >= 150, what="the burst under way")
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        ok_at_restart = codes["OK"]
        await burst
    finally:
        await channel.close()
        await asyncio.to_thread(runtime.stop)
    assert codes["OK"] > ok_at_restart + 100, codes  # the entity went on afterwards
    # Commands caught by the restart failed as UNAVAILABLE (retry), never otherwise.
    assert set(codes) <= {"OK", "UNAVAILABLE"} and codes["UNAVAILABLE"], codes
    conn = await asyncpg.connect(**target.connect_kwargs())
    try:
        rows = await conn.fetch(
            "SELECT revision, payload FROM cos_journal WHERE entity_id = 'hot' ORDER BY revision"
        )
    finally:
        await conn.close()
    journal = [(row["revision"], amount_of(row["payload"])) for row in rows]
    assert [revision for revision, _ in journal] == list(range(1, len(journal) + 1))
    amounts = [amount for _, amount in journal]
    assert len(set(amounts)) == len(amounts), "a command was applied twice"
    totals, total = {}, 0.0
    for revision, amount in journal:
        total += amount
        totals[revision] = total
    for amount, (revision, replied_total) in acked.items():
        assert journal[revision - 1][1] == amount, f"command {amount} acknowledged as {revision}"
        assert replied_total == totals[revision], f"reply of revision {revision}"
    print(f"burst through a database restart: {dict(codes)}, {len(journal)} journaled")


async def test_a_killed_cos_serve_stops_serving_at_once(
    database: DatabaseTarget, write_handler: int
) -> None:
    env = serve_env(write_handler, free_port(), **db_env(database))
    serve = Process([*COS, "serve"], env=env)
    serve.wait_for(r"cos serve ready", timeout=180)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{env['COS_PORT']}")
    stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
    acked: list[float] = []
    stop = asyncio.Event()

    async def load(worker: int) -> None:
        while not stop.is_set():
            try:
                await stub.ProcessCommand(request(f"kill-{worker}", add=[1]), timeout=5)
                acked.append(time.monotonic())
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.01)

    try:
        workers = [asyncio.create_task(load(w)) for w in range(8)]
        await asyncio.sleep(1.5)
        killed = time.monotonic()
        os.killpg(serve.proc.pid, signal.SIGKILL)
        await asyncio.sleep(4.0)
        stop.set()
        await asyncio.gather(*workers)
        after = [t - killed for t in acked if t > killed]
        last = max(after, default=0.0)
        print(f"acknowledged after the kill: {len(after)}, the last at {last:.2f} s")
        assert len([t for t in acked if t < killed]) > 10
        # Before: the host went on acknowledging for about 3 s.
        assert last < 0.5, after
    finally:
        await channel.close()
        serve.stop()
