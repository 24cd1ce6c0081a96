"""One bad request fails alone: poison commands, oversized states, garbage bodies,
callers that gave up (real PostgreSQL, Ray and handler processes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import asyncpg
import grpc
import pytest

from chief_of_state.v1 import service_pb2
from cos.readside._config import FailurePolicy
from cos.sharding import shard_of
from tests.support.commands import request
from tests.support.readsides import Reader, start_reader
from tests.support.runtimes import StartRuntime
from tests.support.serve import ADMIN_TOKEN
from tests.support.waiting import wait_until

__all__ = ["start_reader"]  # the fixture, for pytest

Code = grpc.StatusCode


def same_shard(entity_id: str, num_shards: int, count: int) -> list[str]:
    shard = shard_of(entity_id, num_shards)
    found = (f"innocent-{i}" for i in range(100_000))
    return [e for e in found if shard_of(e, num_shards) == shard][:count]


async def revisions(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT entity_id, max(revision) AS r FROM cos_journal GROUP BY 1")
    return {row["entity_id"]: row["r"] for row in rows}


async def outcomes(calls: list[object]) -> list[object]:
    return list(await asyncio.gather(*calls, return_exceptions=True))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("poison", "code", "needle"),
    [
        # An id over PostgreSQL's index row limit failed ~40 of 200 innocents before.
        (request("p" * 10_000, add=[1]), Code.INVALID_ARGUMENT, "longest allowed is 1024 bytes"),
        # A NUL byte in an event type failed ~32 of 200 innocents before.
        (
            request("nul-type", add=[1], type_url="type.googleapis.com/bad\x00type"),
            Code.INTERNAL,
            "contains a NUL character",
        ),
    ],
)
async def test_a_poisonous_command_fails_alone(
    start_cos: StartRuntime,
    db: asyncpg.Connection,
    poison: service_pb2.ProcessCommandRequest,
    code: grpc.StatusCode,
    needle: str,
) -> None:
    cos = await start_cos(num_shards=2)
    innocents = same_shard(poison.entity_id, 2, 200)
    calls = [cos.stub.ProcessCommand(request(e, add=[1])) for e in innocents]
    calls.insert(100, cos.stub.ProcessCommand(poison))
    results = await outcomes(calls)
    refused = results.pop(100)
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert refused.code() == code and needle in (refused.details() or "")
    assert len(refused.details() or "") < 300  # never the whole input
    assert all(isinstance(r, service_pb2.ProcessCommandResponse) for r in results), [
        r for r in results if isinstance(r, Exception)
    ][:3]
    assert await revisions(db) == {e: 1 for e in innocents}


async def test_an_event_value_without_a_type_url_is_an_error(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cos.stub.ProcessCommand(request("untyped", add=[1], type_url=""))
    assert refused.value.code() == Code.INTERNAL
    assert "value but no type URL" in (refused.value.details() or "")
    assert await revisions(db) == {}
    assert (await cos.stub.ProcessCommand(request("untyped", add=[1]))).meta.revision_number == 1


@pytest.mark.parametrize(
    ("padding", "said"),
    [
        # The handler's reply fits, but not the event with its state plus a read-side call.
        ({"state_bytes": 262_144 - 700}, "with its resulting state takes"),
        # The handler's HandleEvent reply itself is over the limit.
        ({"state_bytes": 400_000}, "the HandleEvent reply of the write handler at"),
        # Its HandleCommand reply is.
        ({"event_bytes": 400_000}, "the HandleCommand reply of the write handler at"),
    ],
    ids=["event-and-state", "event-reply", "command-reply"],
)
async def test_a_state_over_the_largest_message_is_refused_before_writing(
    start_cos: StartRuntime, db: asyncpg.Connection, padding: dict[str, int], said: str
) -> None:
    cos = await start_cos(max_message_bytes=262_144)
    await cos.stub.ProcessCommand(request("big", add=[1]))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cos.stub.ProcessCommand(request("big", add=[1], **padding))
    assert refused.value.code() == Code.RESOURCE_EXHAUSTED
    message = refused.value.details() or ""
    # Our words, not gRPC's ("Received message larger than max"): what was too large,
    # the limit, and the setting that sets it.
    assert said in message and "262144" in message, message
    assert "COS_MAX_MESSAGE_BYTES" in message and "larger than max" not in message, message
    assert await revisions(db) == {"big": 1}
    got = await cos.stub.GetState(service_pb2.GetStateRequest(entity_id="big"))
    assert got.meta.revision_number == 1
    assert (await cos.stub.ProcessCommand(request("big", add=[1]))).meta.revision_number == 2


async def test_a_read_side_never_stalls_behind_an_event_it_cannot_deliver(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    # Written while the largest message was larger: now it can never be delivered.
    writer = await start_cos(num_shards=1, max_message_bytes=4 * 1024 * 1024)
    await writer.stub.ProcessCommand(request("huge", add=[1], state_bytes=600_000))
    await asyncio.to_thread(writer.runtime.stop)
    stopping, skipping = start_reader("rs-stops"), start_reader("rs-skips", FailurePolicy.SKIP)
    cos = await start_cos(
        num_shards=1,
        max_message_bytes=512 * 1024,
        read_side_enabled=True,
        read_sides=(stopping.config(), skipping.config()),
        read_side_retry_min_seconds=0.05,
        read_side_retry_max_seconds=0.2,
    )
    await cos.stub.ProcessCommand(request("after", add=[1]))
    await wait_until(lambda: skipping.delivered() == [("after", 1)], what="the skip side")
    where = ["--cos-host", "127.0.0.1", "--cos-port", str(cos.settings.server.port)]
    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.admin", "readside", "status", "--id", "rs-stops", *where],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "COS_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    assert status.returncode == 0, status.stderr
    assert "stopped at position 1" in status.stdout, status.stdout
    assert "COS_MAX_MESSAGE_BYTES" in status.stdout
    assert stopping.records("attempt") == []  # never sent: it could not arrive


async def test_garbage_nul_and_unbounded_ids_get_invalid_argument(start_cos: StartRuntime) -> None:
    cos = await start_cos()
    raw = cos.channel.unary_unary(
        "/chief_of_state.v1.ChiefOfStateService/ProcessCommand",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.aio.AioRpcError) as garbage:
        await raw(b"\xff\xff\xff\xff not a protobuf")
    assert garbage.value.code() == Code.INVALID_ARGUMENT
    assert "ProcessCommand" in (garbage.value.details() or "")
    for call in (
        cos.stub.ProcessCommand(request("a\x00b", add=[1])),
        cos.stub.GetState(service_pb2.GetStateRequest(entity_id="a\x00b")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as nul:
            await call
        assert nul.value.code() == Code.INVALID_ARGUMENT
        assert "NUL" in (nul.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as long:
        await cos.stub.GetState(service_pb2.GetStateRequest(entity_id="x" * 1_000_000))
    assert long.value.code() == Code.INVALID_ARGUMENT
    assert len(long.value.details() or "") < 200


async def test_a_command_whose_caller_gave_up_is_not_run(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    # One command holds the entity for 1.5 s; the 20 queued behind it give up after 0.5 s,
    # a second before the entity is free: none of them may run then. (Deadlines that end
    # while the entity is busy with an earlier command could be seen a little later by the
    # server than by the client, which is why they are a second apart here.)
    holding = asyncio.ensure_future(
        cos.stub.ProcessCommand(request("queued", add=[1], sleep=1.5), timeout=10)
    )
    await asyncio.sleep(0.2)
    queued = [cos.stub.ProcessCommand(request("queued", add=[1]), timeout=0.5) for _ in range(20)]
    results = await outcomes(queued)
    assert all(
        isinstance(r, grpc.aio.AioRpcError) and r.code() == Code.DEADLINE_EXCEEDED for r in results
    ), results
    assert (await holding).meta.revision_number == 1
    await asyncio.sleep(1.0)  # whatever would still run has finished
    assert (await revisions(db))["queued"] == 1
