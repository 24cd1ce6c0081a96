"""``cos.v1.HistoryService``: an entity's stored events and its states at past revisions,
read from the journal by any node; deleted history refused with its status."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import grpc
import pytest

from cos import postgres
from cos.errors import HistoryDeletedError, InvalidRequestError, NotFoundError, OutOfRangeError
from cos.history import HistoryReader
from cos.storage import JournalSettings
from cos.v1 import history_pb2, history_pb2_grpc
from cos.writeside import _entity as logic
from tests.support.commands import command, request, struct_of
from tests.support.runtimes import StartRuntime


async def write(
    datastore: postgres.PostgresDatastore,
    entity_id: str,
    commands: list[int],
    *,
    snapshot_every: int | None = None,
    **journal: Any,
) -> None:
    """``commands[i]`` events per command; event ``n`` of the entity holds ``{"n": n}`` and
    results in the state ``{"total": n}``."""
    store = postgres.PostgresJournalStore(datastore, JournalSettings(**journal))
    epoch = (await postgres.PostgresLeaseStore(datastore).acquire_shards([0], "a"))[0]
    revision = 0
    for count in commands:
        wrappers = []
        for n in range(revision + 1, revision + count + 1):
            meta = logic.event_meta(entity_id, n, datetime.now(timezone.utc), [])
            wrappers.append(logic.wrap_event(command(n=n), command(total=n), meta))
        await store.append(
            0, epoch, [logic.build_append(entity_id, revision, wrappers, snapshot_every)]
        )
        revision += count


def reader(datastore: postgres.PostgresDatastore, page: int = 2) -> HistoryReader:
    return HistoryReader(postgres.PostgresHistoryStore(datastore), page=page)


async def revisions(history: HistoryReader, *args: Any) -> list[int]:
    found = []
    async for wrapper in history.events(*args):
        assert struct_of(wrapper.event)["n"] == wrapper.meta.revision_number
        assert struct_of(wrapper.resulting_state)["total"] == wrapper.meta.revision_number
        assert wrapper.meta.entity_id == args[0]
        found.append(wrapper.meta.revision_number)
    return found


async def test_events_come_in_revision_order_with_their_state_and_meta(
    datastore: postgres.PostgresDatastore,
) -> None:
    await write(datastore, "e", [2, 3, 2])  # 7 events; pages of 2 cross the commands
    history = reader(datastore)
    assert await revisions(history, "e", 0, 0, 0) == [1, 2, 3, 4, 5, 6, 7]
    assert await revisions(history, "e", 3, 5, 0) == [3, 4, 5]
    assert await revisions(history, "e", 4, 0, 2) == [4, 5]
    assert await revisions(history, "e", 6, 100, 0) == [6, 7]  # past the newest: the newest
    assert await revisions(history, "e", 7, 7, 1) == [7]


async def test_the_state_at_a_revision_is_the_one_its_event_resulted_in(
    datastore: postgres.PostgresDatastore,
) -> None:
    await write(datastore, "e", [2, 3, 2], snapshot_every=3)
    history = reader(datastore)
    for revision in (1, 3, 5, 7):
        found = await history.state_at("e", revision)
        assert struct_of(found.state) == {"total": revision}
        assert (found.meta.entity_id, found.revision) == ("e", revision)


async def test_bad_ranges_and_unknown_entities_are_refused_naming_the_problem(
    datastore: postgres.PostgresDatastore,
) -> None:
    await write(datastore, "e", [3])
    history = reader(datastore)
    refusals: list[tuple[Any, type[Exception], str]] = [
        (revisions(history, "nobody", 0, 0, 0), NotFoundError, "entity 'nobody' not found"),
        (revisions(history, "e", 4, 0, 0), OutOfRangeError, "at revision 3: from_revision 4"),
        (revisions(history, "e", 3, 2, 0), InvalidRequestError, "to_revision 2 is before"),
        (revisions(history, "", 0, 0, 0), InvalidRequestError, "entity"),
        (history.state_at("e", 0), InvalidRequestError, "revision must be 1 or more"),
        (history.state_at("e", 4), OutOfRangeError, "at revision 3: revision 4 is past it"),
        (history.state_at("nobody", 1), NotFoundError, "entity 'nobody' not found"),
    ]
    for call, error, words in refusals:
        with pytest.raises(error, match=words):
            await call


async def test_history_deleted_after_a_snapshot_is_refused_saying_what_is_kept(
    datastore: postgres.PostgresDatastore,
) -> None:
    # Snapshots at 3 and 6, one retained: the events before 6 are marked deleted.
    await write(
        datastore, "e", [1] * 7, snapshot_every=3, logical_deletion=True, num_snapshots_to_retain=1
    )
    history = reader(datastore)
    with pytest.raises(HistoryDeletedError, match="events are kept from revision 6"):
        await revisions(history, "e", 0, 0, 0)
    with pytest.raises(HistoryDeletedError, match="revision 5 of entity 'e' was deleted"):
        await history.state_at("e", 5)
    assert await revisions(history, "e", 6, 0, 0) == [6, 7]
    assert struct_of((await history.state_at("e", 6)).state) == {"total": 6}


async def test_the_history_service_answers_on_the_runtimes_port(start_cos: StartRuntime) -> None:
    cos = await start_cos(
        snapshot_frequency=10, num_snapshots_to_retain=1, journal_logical_deletion=True
    )
    await cos.stub.ProcessCommand(request("kept", add=[1, 2, 3]))
    await cos.stub.ProcessCommand(request("kept", add=[4]))
    await cos.stub.ProcessCommand(request("compacted", repeat=10))  # a snapshot at 10
    await cos.stub.ProcessCommand(request("compacted", add=[4]))
    history = history_pb2_grpc.HistoryServiceStub(cos.channel)

    replies = [
        reply async for reply in history.GetEvents(history_pb2.GetEventsRequest(entity_id="kept"))
    ]
    assert [r.meta.revision_number for r in replies] == [1, 2, 3, 4]
    assert [struct_of(r.event)["amount"] for r in replies] == [1, 2, 3, 4]
    assert [struct_of(r.resulting_state)["total"] for r in replies] == [1, 3, 6, 10]

    at = await history.GetStateAt(history_pb2.GetStateAtRequest(entity_id="compacted", revision=11))
    assert (struct_of(at.state)["total"], at.meta.revision_number) == (14, 11)

    async def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            if isinstance(call, grpc.aio.UnaryStreamCall):
                [_ async for _ in call]
            else:
                await call
        return failed.value.code(), failed.value.details() or ""

    code, words = await status_of(
        history.GetEvents(history_pb2.GetEventsRequest(entity_id="compacted"))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "COS_JOURNAL_LOGICAL_DELETION" in words and "kept from revision 10" in words
    code, words = await status_of(
        history.GetStateAt(history_pb2.GetStateAtRequest(entity_id="kept", revision=5))
    )
    assert (code, words) == (
        grpc.StatusCode.OUT_OF_RANGE,
        "entity 'kept' is at revision 4: revision 5 is past it",
    )
    code, _ = await status_of(history.GetEvents(history_pb2.GetEventsRequest(entity_id="none")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await status_of(history.GetStateAt(history_pb2.GetStateAtRequest(entity_id="kept")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
