"""An entity's commands pipelined: handler calls run ahead of the journal's commit, replies
wait for it, and nothing computed on events that failed to be written is written."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import any_pb2, wrappers_pb2

from chief_of_state.v1 import writeside_pb2
from cos.errors import JournalUnavailableError, NotWrittenError, RevisionMismatchError
from cos.sharding import ClusterSettings, ShardHost
from cos.transport import DEFAULT_MAX_MESSAGE
from cos.writeside import CommandRequest, HandlerCall, Shard, ShardParts, ShardSettings
from cos.writeside._entity import EntityState
from tests.support.fakes import FakeJournalStore, FakePeers, FakeWriteHandler


def command(text: str = "c") -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.StringValue(value=text))
    return packed


class WatchingHandler(FakeWriteHandler):
    """Records, for each command, the revision it ran on and how many events the journal
    had committed then."""

    def __init__(self, store: FakeJournalStore) -> None:
        super().__init__()
        self._store = store
        self.seen: list[tuple[int, int]] = []

    async def handle_command(
        self, request: writeside_pb2.HandleCommandRequest, call: HandlerCall
    ) -> writeside_pb2.HandleCommandResponse:
        self.seen.append((request.prior_event_meta.revision_number, len(self._store.events)))
        await asyncio.sleep(0.001)  # a handler call takes a while
        return await super().handle_command(request, call)


def shard(store: FakeJournalStore, handler: FakeWriteHandler, depth: int) -> Shard:
    parts = ShardParts(
        journal=store,
        handler=handler,
        settings=ShardSettings(entity_pipeline_depth=depth),
        cache_size=100,
        max_message=DEFAULT_MAX_MESSAGE,
    )
    return parts.new_shard(0, 1)


async def burst(s: Shard, count: int, entity: str = "hot") -> list[EntityState | BaseException]:
    tasks = []
    for n in range(count):
        tasks.append(asyncio.create_task(s.run(CommandRequest(entity, command(str(n))))))
        await asyncio.sleep(0)  # they arrive in this order
    return await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("depth", [1, 8])
async def test_an_entitys_commands_run_ahead_of_the_commit_in_order(depth: int) -> None:
    store = FakeJournalStore(delay=0.02, remember=True)
    handler = WatchingHandler(store)
    replies = await burst(shard(store, handler, depth), 24)
    assert [r.revision for r in replies if isinstance(r, EntityState)] == list(range(1, 25))
    # Each command ran on the state the one before produced, in arrival order.
    assert [prior for prior, _ in handler.seen] == list(range(24))
    assert store.events == [("hot", r) for r in range(1, 25)]
    # How far each handler call ran ahead of the journal: never beyond the depth.
    ahead = [prior - committed for prior, committed in handler.seen]
    assert max(ahead) == depth - 1
    if depth == 1:
        assert len(store.batches) == 24  # one write at a time, as without a pipeline
    else:
        # The writes of several commands shared transactions: while one commits, the
        # commands after it run their handler calls and their writes wait together.
        assert len(store.batches) <= 24 // 3, store.batches


async def test_nothing_computed_on_a_failed_write_is_written_or_acknowledged() -> None:
    store = FakeJournalStore(delay=0.02, remember=True)
    store.unavailable_at = {("hot", 5)}
    handler = WatchingHandler(store)
    s = shard(store, handler, depth=8)
    replies = await burst(s, 12)
    kinds = [type(r).__name__ for r in replies]
    first_failed = kinds.index("JournalUnavailableError")
    # Before it: acknowledged with their revisions; it: the database's error; after it,
    # those that ran on its events: not written, and said so (the router runs them again).
    assert [r.revision for r in replies[:first_failed]] == list(range(1, first_failed + 1))
    assert isinstance(replies[first_failed], JournalUnavailableError)
    refused = [r for r in replies[first_failed + 1 :] if isinstance(r, NotWrittenError)]
    assert refused, kinds
    assert "nothing of it was written" in str(refused[0])
    # Those that came after them ran on the durable state: the journal has no gap and
    # no revision twice, and every acknowledged revision is in it.
    revisions = [r for _, r in store.events]
    assert revisions == list(range(1, len(revisions) + 1))
    acked = [r.revision for r in replies if isinstance(r, EntityState)]
    assert acked == sorted(acked) and set(acked) <= set(revisions)
    assert len(acked) == len(revisions)
    # And the entity goes on from its durable state.
    after = await s.run(CommandRequest("hot", command("after")))
    assert after.revision == len(revisions) + 1
    assert await s.state_of("hot") == after


async def test_a_no_op_is_answered_only_once_the_state_it_shows_is_durable() -> None:
    class NoOpAt3(WatchingHandler):
        async def handle_command(
            self, request: writeside_pb2.HandleCommandRequest, call: HandlerCall
        ) -> writeside_pb2.HandleCommandResponse:
            reply = await super().handle_command(request, call)
            if request.command == command("3"):
                return writeside_pb2.HandleCommandResponse()
            return reply

    store = FakeJournalStore(delay=0.05, remember=True)
    store.unavailable_at = {("hot", 3)}  # the write just before the no-op
    replies = await burst(shard(store, NoOpAt3(store), depth=8), 5)
    # Command 2's write (revision 3) failed; the no-op ran on its state: it is not
    # answered with a state that is not in the journal.
    assert isinstance(replies[0], EntityState) and replies[0].revision == 1
    assert isinstance(replies[2], JournalUnavailableError)
    assert ("hot", 3) not in store.events[:2]
    assert isinstance(replies[3], NotWrittenError), replies[3]
    assert "not answered" in str(replies[3])


async def test_the_expected_revision_is_checked_on_the_state_the_handler_sees() -> None:
    store = FakeJournalStore(delay=0.05, remember=True)
    s = shard(store, FakeWriteHandler(), depth=8)
    first = asyncio.create_task(s.run(CommandRequest("e", command())))
    await asyncio.sleep(0.01)  # its write is in flight, not committed yet
    expecting_1 = CommandRequest("e", command(), (("x-cos-expected-revision", "1"),))
    assert (await s.run(expecting_1)).revision == 2
    assert (await first).revision == 1
    with pytest.raises(RevisionMismatchError):
        await s.run(CommandRequest("e", command(), (("x-cos-expected-revision", "1"),)))


async def test_a_keyed_command_waits_for_the_writes_before_it() -> None:
    store = FakeJournalStore(delay=0.05, remember=True)
    handler = WatchingHandler(store)
    s = shard(store, handler, depth=8)
    first = asyncio.create_task(s.run(CommandRequest("e", command())))
    await asyncio.sleep(0.01)
    keyed = CommandRequest("e", command(), (("x-cos-idempotency-key", "k1"),))
    assert (await s.run(keyed)).revision == 2
    await first
    # It ran once the first was committed: its key's look-up saw every write before it.
    assert handler.seen[1] == (1, 1)
    assert (await s.run(keyed)).revision == 2  # the retry gets the original reply
    assert handler.commands == 2


async def test_the_router_runs_the_commands_not_written_again_on_the_durable_state() -> None:
    store = FakeJournalStore(delay=0.02, remember=True)
    store.unavailable_at = {("hot", 5)}
    handler = WatchingHandler(store)
    parts = ShardParts(
        journal=store,
        handler=handler,
        settings=ShardSettings(entity_pipeline_depth=8),
        cache_size=100,
        max_message=DEFAULT_MAX_MESSAGE,
    )
    host = ShardHost(
        host_id="h",
        new_shard=parts.new_shard,
        leases=store,  # type: ignore[arg-type]  # its acquire_shards is all a host uses here
        peers=FakePeers(),  # type: ignore[arg-type]
        cluster=ClusterSettings(num_shards=1),
    )
    await host.assign([0])
    tasks = []
    for _ in range(12):
        tasks.append(asyncio.create_task(host.process_command(CommandRequest("hot", command()))))
        await asyncio.sleep(0)
    replies = await asyncio.gather(*tasks, return_exceptions=True)
    # Only the commands whose own transaction failed say so; the ones that ran on their
    # events ran again, and were written.
    failed = [r for r in replies if not isinstance(r, EntityState)]
    assert failed and {type(r) for r in failed} == {JournalUnavailableError}, failed
    revisions = [r for _, r in store.events]
    assert revisions == list(range(1, 13 - len(failed)))  # no gap, none twice
    assert sorted(r.revision for r in replies if isinstance(r, EntityState)) == revisions
    # Some ran twice: first on the events that failed, then on the durable state.
    assert handler.commands > 12
