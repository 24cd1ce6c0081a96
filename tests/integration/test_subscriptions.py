"""cos.v1.SubscriptionService against a real runtime, PostgreSQL and handler process:
resume from a cursor without gap or duplicate, start options, statuses, fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import grpc
import pytest
import ray

from chief_of_state.v1 import service_pb2_grpc
from cos.errors import PortInUseError
from cos.postgres import DatabaseTarget
from cos.runtime.subscription_process import SubscriptionProcess
from cos.service._subscription import NOT_ENABLED
from cos.sharding import shard_of
from cos.v1 import subscription_pb2, subscription_pb2_grpc
from tests.support.commands import request
from tests.support.database import db_env
from tests.support.processes import Process, free_port
from tests.support.runtimes import RunningRuntime, StartRuntime, runtime_settings
from tests.support.serve import COS, refused_start, serve_env
from tests.support.subscriber_load import digest
from tests.support.subscriptions import check_order, keys, read, stub_on

SHARDS = 4


async def all_keys(db: asyncpg.Connection) -> set[tuple[str, int]]:
    rows = await db.fetch("SELECT entity_id, revision FROM cos_journal")
    return {(r["entity_id"], r["revision"]) for r in rows}


async def send(cos: RunningRuntime, prefix: str, commands: int, events: int = 2) -> None:
    await asyncio.gather(
        *(
            cos.stub.ProcessCommand(request(f"{prefix}-{i % 5}", add=list(range(events))))
            for i in range(commands)
        )
    )


async def test_subscribe_all_resumes_from_its_cursor_without_gap_or_duplicate(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos(subscription_enabled=True, num_shards=SHARDS)
    stub = stub_on(cos.channel)
    for _ in range(4):  # 4 x 5 entities x 2 events, in several rounds: revisions 1..8
        await send(cos, "a", 5)
    first = stub.SubscribeAll(subscription_pb2.SubscribeAllRequest(from_beginning=True))
    before = await read(first, 15)
    first.cancel()  # the subscriber goes away mid-stream
    await send(cos, "a", 10)
    await send(cos, "b", 5)

    resumed = stub.SubscribeAll(subscription_pb2.SubscribeAllRequest(after=before[-1].cursor))
    journal = await all_keys(db)
    after = await read(resumed, len(journal) - 15)
    got = keys(before) + keys(after)
    assert len(got) == len(set(got)) == len(journal)
    assert set(got) == journal
    check_order(before + after)
    assert {p.shard for p in after[-1].cursor.positions} == set(range(SHARDS))

    await cos.stub.ProcessCommand(request("live-1", add=[1]))  # and it is live
    (live,) = await read(resumed, 1)
    assert keys([live]) == [("live-1", 1)]
    resumed.cancel()


async def test_subscribe_one_entity_from_each_start(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos(subscription_enabled=True, num_shards=SHARDS)
    stub = stub_on(cos.channel)
    for _ in range(3):
        await cos.stub.ProcessCommand(request("one", add=[1, 2]))  # revisions 1..6
        await send(cos, "other", 5, events=1)
    Request = subscription_pb2.SubscribeRequest

    beginning = stub.Subscribe(Request(entity_id="one", from_beginning=True))
    got = await read(beginning, 4)
    assert keys(got) == [("one", r) for r in range(1, 5)]
    assert all(e.shard == shard_of("one", SHARDS) for e in got)
    beginning.cancel()
    resumed = stub.Subscribe(Request(entity_id="one", after=got[-1].cursor))
    assert keys(await read(resumed, 2)) == [("one", 5), ("one", 6)]

    after_revision = stub.Subscribe(Request(entity_id="one", after_revision=5))
    assert keys(await read(after_revision, 1)) == [("one", 6)]
    now = stub.Subscribe(Request(entity_id="one", from_now=True))
    await now.initial_metadata()  # sent once the start is fixed
    await send(cos, "other", 5, events=1)
    await cos.stub.ProcessCommand(request("one", add=[7]))
    for call in (resumed, after_revision, now):
        (event,) = await read(call, 1)
        assert keys([event]) == [("one", 7)]
        call.cancel()


async def test_statuses_of_bad_input_and_of_a_disabled_runtime(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(subscription_enabled=True, num_shards=SHARDS)
    stub = stub_on(cos.channel)
    cursor = subscription_pb2.Cursor
    position = subscription_pb2.ShardPosition
    bad = {
        "empty entity ID": subscription_pb2.SubscribeRequest(entity_id=""),
        "for 16 shards; this runtime has 4": subscription_pb2.SubscribeAllRequest(
            after=cursor(shard_count=16, positions=[position(shard=s) for s in range(16)])
        ),
        "shard 0 appears twice": subscription_pb2.SubscribeAllRequest(
            after=cursor(shard_count=4, positions=[position(shard=s % 3) for s in range(4)])
        ),
        "lacks shards [3]": subscription_pb2.SubscribeAllRequest(
            after=cursor(shard_count=4, positions=[position(shard=s) for s in range(3)])
        ),
        "are not those of this subscription": subscription_pb2.SubscribeRequest(
            entity_id="x",
            after=cursor(shard_count=4, positions=[position(shard=s) for s in range(4)]),
        ),
    }
    for words, message in bad.items():
        method = stub.Subscribe if hasattr(message, "entity_id") else stub.SubscribeAll
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await read(method(message), 1)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, words
        assert words in (refused.value.details() or ""), refused.value.details()

    disabled = await start_cos()
    for call in (
        stub_on(disabled.channel).Subscribe(subscription_pb2.SubscribeRequest(entity_id="x")),
        stub_on(disabled.channel).SubscribeAll(subscription_pb2.SubscribeAllRequest()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as off:
            await read(call, 1)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert off.value.details() == NOT_ENABLED


async def latencies(cos: RunningRuntime, count: int) -> list[float]:
    taken = []
    for i in range(count):
        started = time.perf_counter()
        await cos.stub.ProcessCommand(request(f"lat-{i % 10}", add=[1]))
        taken.append((time.perf_counter() - started) * 1000)
    return taken


async def test_a_hundred_subscribers_and_a_slow_one_get_every_event(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    """On the subscription process's port (COS_SUBSCRIPTION_PORT), with the subscribers
    in a process of their own; prints command latency without and with them."""
    port = free_port()
    cos = await start_cos(
        subscription_enabled=True, num_shards=SHARDS, subscription_buffer=5, subscription_port=port
    )
    node = await asyncio.to_thread(ray.get, next(iter(cos.runtime.hosts.values())).pid.remote())
    before = cpu_seconds(node)
    alone = await latencies(cos, 100)
    node_alone = cpu_seconds(node) - before
    subscribers = Process(
        [sys.executable, "-m", "tests.support.subscriber_load", "--address",
         f"127.0.0.1:{port}", "--streams", "100", "--slow", "1"],
        stdin=True,
    )  # fmt: skip
    try:
        await asyncio.to_thread(subscribers.wait_for, "^subscribed$", 60)
        # 40 KB states: the slow stream's unread messages overflow gRPC's windows, then
        # its buffer of 5, so it falls back to the journal.
        for round_ in range(4):
            await asyncio.gather(
                *(
                    cos.stub.ProcessCommand(request(f"big-{i}", add=[1, 2], state_bytes=40_000))
                    for i in range(round_ * 10, round_ * 10 + 10)
                )
            )
        before = cpu_seconds(node)
        watched = await latencies(cos, 100)
        node_watched = cpu_seconds(node) - before
        expected = await all_keys(db)
        subscribers.send(str(len(expected)))
        said = await asyncio.to_thread(subscribers.wait_for, r"^\[\[", 300)
    finally:
        subscribers.stop()
    outcome = json.loads(said.string)
    assert len(outcome) == 101
    for count, found, in_order in outcome:
        assert (count, found, in_order) == (len(expected), digest(expected), True)
    print(
        f"\ncommand latency ms (median / p90): without subscribers"
        f" {statistics.median(alone):.2f} / {statistics.quantiles(alone, n=10)[-1]:.2f},"
        f" with 101 SubscribeAll streams"
        f" {statistics.median(watched):.2f} / {statistics.quantiles(watched, n=10)[-1]:.2f};"
        f" the node's CPU per command {node_alone * 10:.2f} ms and {node_watched * 10:.2f} ms"
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_cursor_resumes_across_a_restart_of_cos_serve(
    database: DatabaseTarget, write_handler: int
) -> None:
    """Read from the subscription process (COS_SUBSCRIPTION_PORT) first, which comes back
    when killed; resumed on COS_PORT: a cursor is good on either port."""
    streams = free_port()
    env = serve_env(
        write_handler,
        free_port(),
        COS_SUBSCRIPTION_ENABLED="true",
        COS_SUBSCRIPTION_PORT=str(streams),
        **db_env(database),
    )
    address = f"127.0.0.1:{env['COS_PORT']}"
    first = Process([*COS, "serve"], env=env)
    try:
        first.wait_for(r"cos serve ready", timeout=180)
        killed = subscription_process(streams)
        os.kill(killed, signal.SIGKILL)
        with (
            grpc.insecure_channel(address) as channel,
            grpc.insecure_channel(f"127.0.0.1:{streams}") as separate,
        ):
            commands = service_pb2_grpc.ChiefOfStateServiceStub(channel)
            for i in range(10):
                commands.ProcessCommand(request(f"r-{i % 3}", add=[i, 1]))
            # The node starts its subscription process again.
            stream = sync_stub(separate).SubscribeAll(
                subscription_pb2.SubscribeAllRequest(from_beginning=True), wait_for_ready=True
            )
            received = [next(stream) for _ in range(5)]
            assert subscription_process(streams) != killed
            assert first.stop() == 0, first.output
            with pytest.raises(grpc.RpcError) as ended:
                received.extend(stream)  # what was on its way, then the end
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    finally:
        first.stop()
    assert "the subscription process ended (exit -9)" in first.output

    second = Process([*COS, "serve"], env=env)
    try:
        second.wait_for(r"cos serve ready", timeout=180)
        with grpc.insecure_channel(address) as channel:
            commands = service_pb2_grpc.ChiefOfStateServiceStub(channel)
            for i in range(6):
                commands.ProcessCommand(request(f"r-{i % 4}", add=[1]))
            resumed = sync_stub(channel).SubscribeAll(
                subscription_pb2.SubscribeAllRequest(after=received[-1].cursor)
            )
            rest = [next(resumed) for _ in range(26 - len(received))]
            resumed.cancel()
    finally:
        second.stop()
    got = keys(received + rest)
    assert len(got) == len(set(got)) == 26
    assert set(got) == {
        (f"r-{e}", r) for e, top in ((0, 10), (1, 8), (2, 7), (3, 1)) for r in range(1, top + 1)
    }
    check_order(received + rest)


def test_a_taken_subscription_port_is_one_line(database: DatabaseTarget) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = serve_env(
            1, free_port(), COS_SUBSCRIPTION_ENABLED="true", COS_SUBSCRIPTION_PORT=str(port)
        )
        last = refused_start({**env, **db_env(database)})
    assert last == (
        f"cos: COS_SUBSCRIPTION_PORT: 127.0.0.1:{port} is already in use (COS_ADDRESS,"
        " COS_SUBSCRIPTION_PORT): stop what listens there or choose another port"
    )


async def test_the_subscription_process_names_its_taken_port(database: DatabaseTarget) -> None:
    """Where cos serve does not check first (a node joining a cluster)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = runtime_settings(1, subscription_enabled=True, subscription_port=port)
        with pytest.raises(PortInUseError, match=f"^COS_SUBSCRIPTION_PORT: 127.0.0.1:{port} is"):
            await SubscriptionProcess(settings, database, port).start()


def subscription_process(port: int) -> int:
    """The pid of the subscription process serving ``port`` on this machine."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"cos.runtime.subscription_process" in argv and argv[-2].endswith(b":%d" % port):
                return int(entry.name)
    raise AssertionError(f"no subscription process serves port {port}")


def sync_stub(channel: grpc.Channel) -> subscription_pb2_grpc.SubscriptionServiceStub:
    return subscription_pb2_grpc.SubscriptionServiceStub(channel)
