"""Idempotency keys and expected revisions against a real runtime, PostgreSQL and handler
process (x-cos-idempotency-key, x-cos-expected-revision)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import grpc
import pytest

from chief_of_state.v1 import service_pb2
from tests.support.commands import send, state_of
from tests.support.runtimes import StartRuntime

KEY = "x-cos-idempotency-key"
EXPECTED = "x-cos-expected-revision"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
Reply = service_pb2.ProcessCommandResponse


async def revisions(db: asyncpg.Connection, entity_id: str) -> list[int]:
    rows = await db.fetch(
        "SELECT revision FROM cos_journal WHERE entity_id = $1 ORDER BY revision", entity_id
    )
    return [row["revision"] for row in rows]


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return failed.value


async def test_a_keyed_command_is_applied_once_however_often_it_is_sent(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos(idempotency_window_seconds=3600)
    stub = cos.stub
    first = await send(stub, "idem-1", f"{KEY}=k1", add=[5])
    assert first.meta.revision_number == 1
    assert await send(stub, "idem-1", f"{KEY}=k1", add=[5]) == first
    # Ten at once: they wait in the entity's mailbox; the first applies, the rest find it.
    replies = await asyncio.gather(
        *(send(stub, "idem-2", f"{KEY}=k2", add=[1, 2]) for _ in range(10))
    )
    assert all(reply == replies[0] for reply in replies)
    assert replies[0].meta.revision_number == 2
    assert await revisions(db, "idem-2") == [1, 2]

    # A retry after later commands gets its own reply, read back from the journal.
    later = await send(stub, "idem-1", add=[1])
    assert later.meta.revision_number == 2
    assert await send(stub, "idem-1", f"{KEY}=k1", add=[5]) == first
    assert await revisions(db, "idem-1") == [1, 2]
    # Keys are per entity: the same key on another entity is another command.
    assert (await send(stub, "idem-3", f"{KEY}=k1", add=[5])).meta.revision_number == 1

    reused = await refused(send(stub, "idem-1", f"{KEY}=k1", add=[6]))
    assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
    said = reused.details() or ""
    assert "'k1'" in said and "'idem-1'" in said and "revision 1" in said, said
    assert await revisions(db, "idem-1") == [1, 2]

    # Across a restart of the runtime (new hosts, new leases): the journal remembers.
    await asyncio.to_thread(cos.runtime.stop)
    again = await start_cos(port=cos.settings.server.port, idempotency_window_seconds=3600)
    assert await send(again.stub, "idem-1", f"{KEY}=k1", add=[5]) == first
    assert await send(again.stub, "idem-2", f"{KEY}=k2", add=[1, 2]) == replies[0]
    assert await revisions(db, "idem-2") == [1, 2]

    # Past the window (COS_IDEMPOTENCY_WINDOW_SECONDS, 1 hour here) the key is forgotten:
    # the rows are made two hours older rather than waited for.
    await db.execute("UPDATE cos_idempotency SET created_at = created_at - interval '2 hours'")
    renewed = await send(again.stub, "idem-1", f"{KEY}=k1", add=[6])
    assert renewed.meta.revision_number == 3
    assert await send(again.stub, "idem-1", f"{KEY}=k1", add=[6]) == renewed
    assert await revisions(db, "idem-1") == [1, 2, 3]


async def test_a_keyed_no_op_is_remembered_and_bad_keys_are_refused(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    stub = cos.stub
    nothing = await send(stub, "noop-1", f"{KEY}=n1")  # the handler returns no event
    assert nothing.meta.revision_number == 0 and nothing.state.type_url == EMPTY_TYPE
    await send(stub, "noop-1", add=[2])
    assert await send(stub, "noop-1", f"{KEY}=n1") == nothing  # not run again
    reused = await refused(send(stub, "noop-1", f"{KEY}=n1", add=[1]))
    assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "revision 0" in (reused.details() or "")
    assert await revisions(db, "noop-1") == [1]
    stored = await db.fetch("SELECT entity_id, key, revision FROM cos_idempotency")
    assert [tuple(row) for row in stored] == [("noop-1", "n1", 0)]

    for key, said in (("", "empty"), ("k" * 201, "at most 200")):
        bad = await refused(send(stub, "noop-2", f"{KEY}={key}", add=[1]))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert KEY in (bad.details() or "") and said in (bad.details() or "")
    assert await revisions(db, "noop-2") == []


async def test_expected_revision_guards_the_write(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    stub = cos.stub
    created = await send(stub, "cond-1", f"{EXPECTED}=0", add=[1])
    assert created.meta.revision_number == 1
    # This command makes the handler fail: FAILED_PRECONDITION, not INTERNAL, shows that
    # the handler was not called.
    stale = await refused(send(stub, "cond-1", f"{EXPECTED}=0", fail="INTERNAL"))
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "at revision 1, not at revision 0" in (stale.details() or "")
    malformed = await refused(send(stub, "cond-1", f"{EXPECTED}=one", add=[1]))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert EXPECTED in (malformed.details() or "")

    # Writers that read revision 1 at once: exactly one of them wins.
    results = await asyncio.gather(
        *(send(stub, "cond-1", f"{EXPECTED}=1", add=[1]) for _ in range(10)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, Reply)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and won[0].meta.revision_number == 2
    assert {e.code() for e in lost} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert len(lost) == 9
    assert await revisions(db, "cond-1") == [1, 2]

    # A keyed retry of an applied conditional command: the key is checked first.
    guarded = (f"{KEY}=c1", f"{EXPECTED}=2")
    applied = await send(stub, "cond-1", *guarded, add=[4])
    assert applied.meta.revision_number == 3 and state_of(applied)["total"] == 6
    assert await send(stub, "cond-1", *guarded, add=[4]) == applied
    assert await revisions(db, "cond-1") == [1, 2, 3]
