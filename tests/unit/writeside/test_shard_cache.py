from __future__ import annotations

import asyncio

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
