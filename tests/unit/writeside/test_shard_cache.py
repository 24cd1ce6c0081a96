from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest
from google.protobuf import any_pb2, wrappers_pb2

from cos.errors import ConflictError, IdempotencyKeyReusedError
from cos.storage import IdempotencyRecord
from cos.transport import DEFAULT_MAX_MESSAGE
from cos.writeside import CommandRequest, Shard, ShardParts, ShardSettings
from cos.writeside._entity import initial_state
from cos.writeside._guards import command_hash
from tests.support.fakes import FakeJournalStore, FakeWriteHandler


def command() -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.StringValue(value="c"))
    return packed


def shard(
    handler: FakeWriteHandler, cache_size: int, store: FakeJournalStore | None = None
) -> Shard:
    parts = ShardParts(
        journal=store or FakeJournalStore(delay=0),
        handler=handler,
        settings=ShardSettings(),
        cache_size=cache_size,
        max_message=DEFAULT_MAX_MESSAGE,
    )
    return parts.new_shard(0, 1)


async def test_cache_keeps_the_most_recently_used_entities() -> None:
    s = shard(FakeWriteHandler(), cache_size=3)
    for entity_id in ["a", "b", "c", "a", "d"]:
        await s.run(CommandRequest(entity_id, command()))
    assert s.entity_ids() == ["c", "a", "d"]


async def test_idle_entities_are_passivated_and_recent_ones_stay() -> None:
    s = shard(FakeWriteHandler(), cache_size=10)
    await s.run(CommandRequest("old", command()))
    await asyncio.sleep(0.05)
    await s.run(CommandRequest("new", command()))
    assert s.passivate(idle_seconds=0.04) == 1
    assert s.entity_ids() == ["new"]


async def test_entities_with_a_command_in_flight_are_never_dropped() -> None:
    handler = FakeWriteHandler()
    s = shard(handler, cache_size=1)
    handler.gate = asyncio.Event()
    busy = asyncio.create_task(s.run(CommandRequest("busy", command())))
    await asyncio.sleep(0.01)
    assert s.passivate(idle_seconds=0, now=10**9) == 0
    handler.gate.set()
    await s.run(CommandRequest("other", command()))
    await busy
    assert "other" in s.entity_ids()


async def test_revisions_continue_after_the_entity_left_memory() -> None:
    s = shard(FakeWriteHandler(), cache_size=10)
    first = await s.run(CommandRequest("e", command()))
    assert first.revision == 1
    s.passivate(idle_seconds=0, now=10**9)
    assert s.entity_ids() == []
    # FakeJournalStore remembers nothing, so a reloaded entity starts over:
    # the shard must have asked the store again rather than kept a copy.
    again = await s.run(CommandRequest("e", command()))
    assert again.revision == 1


async def test_a_cancelled_caller_does_not_release_the_entity_early() -> None:
    handler = FakeWriteHandler()
    s = shard(handler, cache_size=1)
    handler.gate = asyncio.Event()
    caller = asyncio.create_task(s.run(CommandRequest("held", command())))
    await asyncio.sleep(0.01)
    caller.cancel()
    await asyncio.sleep(0.01)
    # The command still runs in the shard: its entity must stay put.
    assert s.passivate(idle_seconds=0, now=10**9) == 0
    assert s.entity_ids() == ["held"]
    handler.gate.set()
    await asyncio.sleep(0.01)
    assert s.passivate(idle_seconds=0, now=10**9) == 1


def keyed(entity_id: str, key: str) -> CommandRequest:
    return CommandRequest(entity_id, command(), (("x-cos-idempotency-key", key),))


async def test_a_key_recorded_by_another_writer_meanwhile_gets_its_reply_not_a_write() -> None:
    store, handler = FakeJournalStore(delay=0), FakeWriteHandler()
    s = shard(handler, 10, store)
    mine = command_hash(command())
    store.recorded_by_another[("z", "k")] = IdempotencyRecord("k", mine, 0)
    reply = await s.run(keyed("z", "k"))
    assert reply.revision == 0 and reply.state == initial_state("z").state
    assert store.batches == []  # the conflicting append wrote nothing
    # Recorded with another command: the caller is told so, nothing is written.
    store.recorded_by_another[("z", "k2")] = IdempotencyRecord("k2", b"other", 0)
    with pytest.raises(IdempotencyKeyReusedError):
        await s.run(keyed("z", "k2"))
    assert store.batches == []
    # A conflict with no record of the key is passed on (ABORTED: retry).
    store.conflicting.add("y")
    with pytest.raises(ConflictError):
        await s.run(keyed("y", "k"))


async def test_a_command_dropped_after_its_caller_left_is_logged_once_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    handler = FakeWriteHandler()
    s = shard(handler, cache_size=10)
    handler.gate = asyncio.Event()
    first = asyncio.create_task(s.run(CommandRequest("hot", command())))
    await asyncio.sleep(0.01)
    # Queued behind the first, with a deadline that passes while it waits; its caller
    # gives up (gRPC cancels the call) before it gets its turn.
    late = asyncio.create_task(
        s.run(CommandRequest("hot", command(), deadline=time.monotonic() + 0.02))
    )
    await asyncio.sleep(0.05)
    late.cancel()
    await asyncio.sleep(0)
    handler.gate.set()
    await first
    await asyncio.sleep(0.01)
    del late
    gc.collect()
    await asyncio.sleep(0)
    assert unretrieved == []  # no "Task exception was never retrieved"
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1, caplog.text
    assert dropped[0].levelno == logging.INFO and dropped[0].exc_info is None
    assert "deadline passed" in dropped[0].getMessage()
    assert handler.commands == 1  # the late one never ran


async def test_an_unexpected_failure_after_the_caller_left_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(FakeWriteHandler):
        async def handle_command(self, request, call):  # type: ignore[no-untyped-def]
            await super().handle_command(request, call)
            raise KeyError("a bug in the runtime")

    handler = Broken()
    s = shard(handler, cache_size=10)
    handler.gate = asyncio.Event()
    caller = asyncio.create_task(s.run(CommandRequest("e", command())))
    await asyncio.sleep(0.01)
    caller.cancel()
    handler.gate.set()
    await asyncio.sleep(0.01)
    [record] = [r for r in caplog.records if "after its caller left" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None
