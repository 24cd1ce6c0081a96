"""ProcessCommand / GetState against a real runtime, PostgreSQL and handler process."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import asyncpg
import grpc
import pytest
from google.protobuf import any_pb2

from chief_of_state.v1 import common_pb2, persistence_pb2, service_pb2
from tests.support.commands import command, request, state_of, struct_of
from tests.support.errors import error_info
from tests.support.processes import free_port
from tests.support.runtimes import StartRuntime

EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"


async def journal(db: asyncpg.Connection, entity_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT revision, position, shard, xmin::text AS tx, payload FROM cos_journal "
        "WHERE entity_id = $1 ORDER BY revision",
        entity_id,
    )


async def test_new_entity_starts_empty_at_revision_zero(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await cos.stub.GetState(service_pb2.GetStateRequest(entity_id="acct-1"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "acct-1" in (missing.value.details() or "")

    reply = await cos.stub.ProcessCommand(request("acct-1", add=[5]))

    state = state_of(reply)
    assert state["first_prior_state_type"] == EMPTY_TYPE
    assert reply.meta.entity_id == "acct-1"
    assert reply.meta.revision_number == 1
    assert reply.meta.revision_date.seconds > 0
    stored = await journal(db, "acct-1")
    assert [row["revision"] for row in stored] == [1]
    event = persistence_pb2.EventWrapper.FromString(stored[0]["payload"])
    assert event.meta.revision_number == 1
    assert event.resulting_state == reply.state
    got = await cos.stub.GetState(service_pb2.GetStateRequest(entity_id="acct-1"))
    assert got.state == reply.state
    assert got.meta == reply.meta


async def test_handler_sees_prior_revision_zero_and_entity_id(start_cos: StartRuntime) -> None:
    cos = await start_cos()
    first = await cos.stub.ProcessCommand(request("e-1", add=[1]))
    second = await cos.stub.ProcessCommand(request("e-1", add=[1]))
    # The handler refuses any revision that is not prior + 1, and records the
    # prior meta it was given in the state.
    assert state_of(first)["last_revision"] == 1
    assert state_of(second)["last_revision"] == 2
    assert state_of(second)["total"] == 2
    assert state_of(second)["entity_id"] == "e-1"


async def test_no_op_command_changes_and_writes_nothing(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    before = await cos.stub.ProcessCommand(request("noop", add=[3]))
    after = await cos.stub.ProcessCommand(request("noop", add=[]))
    assert after.state == before.state
    assert after.meta == before.meta
    assert len(await journal(db, "noop")) == 1
    fresh = await cos.stub.ProcessCommand(request("noop-new"))
    assert fresh.meta.revision_number == 0
    assert fresh.state.type_url == EMPTY_TYPE
    assert await journal(db, "noop-new") == []


async def test_three_events_get_consecutive_revisions_in_one_transaction(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    await cos.stub.ProcessCommand(request("multi", add=[1]))
    reply = await cos.stub.ProcessCommand(request("multi", add=[10, 20, 30]))
    assert reply.meta.revision_number == 4
    state = state_of(reply)
    assert state["total"] == 61  # each HandleEvent built on the previous result
    rows = await journal(db, "multi")
    assert [row["revision"] for row in rows] == [1, 2, 3, 4]
    assert len({row["tx"] for row in rows[1:]}) == 1, "the three events share one transaction"
    assert rows[0]["tx"] != rows[1]["tx"]
    totals = [
        persistence_pb2.EventWrapper.FromString(row["payload"]).resulting_state for row in rows
    ]
    assert [struct_of(s)["total"] for s in totals] == [1, 11, 31, 61]


async def test_event_handler_failure_persists_none_of_the_events(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    await cos.stub.ProcessCommand(request("half", add=[1]))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(request("half", add=[1, 2, 3], event_fail_at=2))
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert "on purpose" in (failed.value.details() or "")
    assert [row["revision"] for row in await journal(db, "half")] == [1]
    reply = await cos.stub.ProcessCommand(request("half", add=[5]))
    assert reply.meta.revision_number == 2
    assert state_of(reply)["total"] == 6


async def test_legacy_single_event_field_is_used(start_cos: StartRuntime) -> None:
    cos = await start_cos()
    reply = await cos.stub.ProcessCommand(request("legacy", add=[7, 8], legacy=True))
    assert reply.meta.revision_number == 1
    assert state_of(reply)["total"] == 7


async def test_handler_failed_precondition_reaches_caller_with_rich_details(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos()
    call = cos.stub.ProcessCommand(
        request("rich", fail="FAILED_PRECONDITION", message="balance too low")
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failed.value.details() == "balance too low"
    info = error_info(failed.value)
    assert (info.reason, info.domain) == ("TEST_FAILURE", "tests")


@pytest.mark.parametrize(
    ("entity_id", "with_command", "message"),
    [("", True, "empty entity ID"), ("x", False, "no command sent")],
)
async def test_invalid_requests_are_invalid_argument_in_chief_of_states_words(
    start_cos: StartRuntime, entity_id: str, with_command: bool, message: str
) -> None:
    cos = await start_cos()
    request_ = service_pb2.ProcessCommandRequest(entity_id=entity_id)
    if with_command:
        request_.command.CopyFrom(command(add=[1]))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(request_)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.value.details() == message
    with pytest.raises(grpc.aio.AioRpcError) as empty_get:
        await cos.stub.GetState(service_pb2.GetStateRequest(entity_id=""))
    assert empty_get.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert empty_get.value.details() == "empty entity ID"


async def test_empty_any_command_is_invalid_argument(start_cos: StartRuntime) -> None:
    cos = await start_cos()
    message = service_pb2.ProcessCommandRequest(entity_id="x", command=any_pb2.Any())
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(message)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_handler_down_is_unavailable(start_cos: StartRuntime) -> None:
    cos = await start_cos(write_side_port=free_port())
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(request("down", add=[1]))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "write handler" in (failed.value.details() or "")


async def test_slow_handler_is_deadline_exceeded_and_entity_stays_usable(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(command_handler_timeout=0.3)
    await cos.stub.ProcessCommand(request("slow", add=[1]))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(request("slow", add=[1], sleep=1.5))
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "300 ms" in (failed.value.details() or "")
    reply = await cos.stub.ProcessCommand(request("slow", add=[1]))
    assert reply.meta.revision_number == 2


async def test_each_handler_call_is_bounded_by_the_grpc_calls_timeout(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(command_handler_timeout=30.0, grpc_calls_timeout=250)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(request("per-call", add=[1], sleep=1.5))
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (failed.value.details() or "").endswith(
        "did not answer HandleCommand within 250 ms (COS_GRPC_CALLS_TIMEOUT)"
    )


async def test_event_handler_without_state_is_internal(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(request("nostate", add=[1, 1], no_state_at=2))
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    details = failed.value.details() or ""
    assert details.startswith("event handler replied with empty state")  # CoS's words
    assert "resulting_state" in details
    assert await journal(db, "nostate") == []
    reply = await cos.stub.ProcessCommand(request("nostate", add=[1]))
    assert reply.meta.revision_number == 1


async def test_concurrent_commands_keep_revisions_gap_free(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    entities = [f"c-{i}" for i in range(20)]
    rng = random.Random(7)
    targets = [rng.choice(entities) for _ in range(200)]
    counts = Counter(targets)
    replies = await asyncio.gather(*(cos.stub.ProcessCommand(request(e, add=[1])) for e in targets))
    assert len(replies) == 200
    for entity_id, n in counts.items():
        rows = await journal(db, entity_id)
        assert [row["revision"] for row in rows] == list(range(1, n + 1)), entity_id
        got = await cos.stub.GetState(service_pb2.GetStateRequest(entity_id=entity_id))
        assert got.meta.revision_number == n
        assert state_of(got)["total"] == n
    positions = await db.fetch(
        "SELECT shard, array_agg(position ORDER BY position) AS p FROM cos_journal GROUP BY shard"
    )
    for row in positions:
        assert list(row["p"]) == list(range(1, len(row["p"]) + 1)), row["shard"]
    assert sum(len(row["p"]) for row in positions) == 200


async def test_headers_are_propagated_and_persisted(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos(
        write_side_propagated_headers="x-propagated", write_persisted_headers="x-persisted"
    )
    metadata = (
        ("x-propagated", "p-value"),
        ("x-persisted", "s-value"),
        ("x-other", "o-value"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    reply = await cos.stub.ProcessCommand(request("hdr", add=[1]), metadata=metadata)
    seen = dict(state_of(reply)["last_headers"])
    assert seen == {
        "x-propagated": "p-value",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    assert list(reply.meta.headers) == [
        common_pb2.Header(key="x-persisted", string_value="s-value")
    ]
    stored = persistence_pb2.EventWrapper.FromString((await journal(db, "hdr"))[0]["payload"])
    assert list(stored.meta.headers) == list(reply.meta.headers)


async def test_proto_validation_refuses_unlisted_event_types(start_cos: StartRuntime) -> None:
    cos = await start_cos(
        write_side_proto_validation=True,
        write_side_event_protos="some.other.Event",
        write_side_state_protos="google.protobuf.Struct",
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await cos.stub.ProcessCommand(request("typed", add=[1]))
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert (failed.value.details() or "").startswith(
        "invalid event: type.googleapis.com/google.protobuf.Struct"  # CoS's words
    )
