"""Read sides: ordered, at-least-once delivery per shard, policies, operator actions."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import asyncpg
import grpc
import pytest

from chief_of_state.v1 import manager_pb2, manager_pb2_grpc
from cos.readside._config import FailurePolicy
from cos.sharding import shard_of
from tests.support.commands import request
from tests.support.readsides import Reader, cli, start_reader
from tests.support.runtimes import RunningRuntime, StartRuntime
from tests.support.serve import OPERATOR_METADATA
from tests.support.waiting import wait_until

__all__ = ["start_reader"]  # the fixture, re-exported for pytest

FAST_RETRIES = {"read_side_retry_min_seconds": 0.05, "read_side_retry_max_seconds": 0.2}


async def start_with(start_cos: StartRuntime, *readers: Any, **settings: Any) -> RunningRuntime:
    configs = tuple(r if not isinstance(r, Reader) else r.config() for r in readers)
    return await start_cos(read_side_enabled=True, read_sides=configs, **FAST_RETRIES, **settings)


def manager(cos: RunningRuntime) -> OperatorStub:
    return OperatorStub(manager_pb2_grpc.ReadSideManagerServiceStub(cos.channel))


class OperatorStub:
    """A ReadSideManagerService stub whose calls carry the operator token."""

    def __init__(self, stub: manager_pb2_grpc.ReadSideManagerServiceStub) -> None:
        self._stub = stub

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self._stub, method)
        return lambda request: rpc(request, metadata=OPERATOR_METADATA)


def entities_in(shard: int, num_shards: int, count: int, prefix: str = "e") -> list[str]:
    found = (f"{prefix}{i}" for i in range(10_000))
    return [e for e in found if shard_of(e, num_shards) == shard][:count]


def revisions_by_entity(reader: Reader) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    for entity_id, revision in reader.delivered():
        seen[entity_id].append(revision)
    return seen


async def offsets_match_journal(db: asyncpg.Connection, read_side_id: str) -> bool:
    last = await db.fetch("SELECT shard, max(position) AS p FROM cos_journal GROUP BY shard")
    stored = await db.fetch(
        "SELECT shard, position FROM cos_read_side_offsets WHERE read_side_id = $1", read_side_id
    )
    have = {r["shard"]: r["position"] for r in stored}
    return all(have.get(r["shard"]) == r["p"] for r in last)


async def test_every_event_reaches_each_read_side_in_order(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    a, b = start_reader("rs-a"), start_reader("rs-b")
    cos = await start_with(start_cos, a, b, num_shards=4)
    entities = [f"acct-{i}" for i in range(50)]
    for _ in range(20):  # 1,000 commands, 50 at a time
        await asyncio.gather(*(cos.stub.ProcessCommand(request(e, add=[1])) for e in entities))
    expected = {(e, r) for e in entities for r in range(1, 21)}
    for reader in (a, b):
        await wait_until(lambda r=reader: set(r.delivered()) >= expected, what=reader.read_side_id)
        for entity_id, revisions in revisions_by_entity(reader).items():
            assert revisions == list(range(1, 21)), entity_id  # strictly increasing, none lost
        await wait_until(lambda r=reader: offsets_match_journal(db, r.read_side_id))
    # Chief of State's headers: the entity id and the event tag (the shard number).
    assert all(
        r["headers"]
        == {"x-cos-entity-id": r["entity_id"], "x-cos-event-tag": str(shard_of(r["entity_id"], 4))}
        for r in a.records()
    )
    reply = await manager(cos).GetLatestOffset(
        manager_pb2.GetLatestOffsetRequest(read_side_id="rs-a")
    )
    last = await db.fetch("SELECT shard, max(position) AS p FROM cos_journal GROUP BY shard")
    assert {(o.cluster_shard_number, o.offset) for o in reply.offsets} >= {
        (r["shard"], r["p"]) for r in last
    }
    assert sorted(o.cluster_shard_number for o in reply.offsets) == [0, 1, 2, 3]


async def test_events_of_concurrent_transactions_in_one_shard_all_arrive(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    # One shard, many concurrent commits, and the runner reading while they
    # land: positions out of commit order or with gaps would make it skip some.
    reader = start_reader("rs-live")
    cos = await start_with(start_cos, reader, num_shards=1, journal_max_batch=4)
    entities = [f"live-{i}" for i in range(30)]
    for _ in range(10):
        await asyncio.gather(*(cos.stub.ProcessCommand(request(e, add=[1])) for e in entities))
    expected = {(e, r) for e in entities for r in range(1, 11)}
    await wait_until(lambda: set(reader.delivered()) >= expected)
    assert len(reader.delivered()) == 300


async def test_replay_skip_retries_five_times_then_skips(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    reader = start_reader("rs-replay", FailurePolicy.REPLAY_SKIP)
    cos = await start_with(start_cos, reader, num_shards=1)
    await cos.stub.ProcessCommand(request("p", add=[1]))
    await cos.stub.ProcessCommand(request("p", add=[1], poison=True))
    await cos.stub.ProcessCommand(request("p", add=[1]))
    await wait_until(lambda: ("p", 3) in reader.delivered())
    assert reader.delivered() == [("p", 1), ("p", 3)]
    attempts = [r for r in reader.records("attempt") if r["revision"] == 2]
    assert len(attempts) == 1 + 5


async def test_a_read_handler_back_from_an_outage_gets_the_next_event_at_its_first_attempt(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    reader = start_reader("rs-back", FailurePolicy.SKIP)
    cos = await start_with(start_cos, reader, num_shards=1)
    await cos.stub.ProcessCommand(request("before", add=[1]))
    await wait_until(lambda: reader.delivered() == [("before", 1)])
    reader.process.stop()
    # While the handler is down its events are skipped, and each failed attempt makes
    # gRPC back off longer before it connects again.
    for i in range(8):
        await cos.stub.ProcessCommand(request(f"down-{i}", add=[1]))
        await asyncio.sleep(0.7)

    async def skipped_all() -> bool:
        row = await db.fetchval(
            "SELECT position FROM cos_read_side_offsets WHERE read_side_id = 'rs-back'"
        )
        return bool(row == 9)

    await wait_until(skipped_all, what="the events written while down to be skipped")
    reader.restart()
    await cos.stub.ProcessCommand(request("after", add=[1]))
    await wait_until(lambda: ("after", 1) in reader.delivered(), timeout=20)
    assert [r["entity_id"] for r in reader.records("attempt")] == ["before", "after"]


async def test_stop_policy_halts_at_the_event_until_skipped(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    reader = start_reader("rs-stop", FailurePolicy.STOP)
    cos = await start_with(start_cos, reader, num_shards=1)
    await cos.stub.ProcessCommand(request("s", add=[1]))
    await cos.stub.ProcessCommand(request("s", add=[1], poison=True))
    await cos.stub.ProcessCommand(request("s", add=[1]))
    await wait_until(lambda: ("s", 1) in reader.delivered())
    await wait_until(lambda: any(r["revision"] == 2 for r in reader.records("attempt")))
    await asyncio.sleep(1.5)
    assert reader.delivered() == [("s", 1)], "nothing after the failed event"
    assert len([r for r in reader.records("attempt") if r["revision"] == 2]) == 1, "no retries"

    skipped = await asyncio.to_thread(
        cli, cos.settings.server.port, "skip", "--id", "rs-stop", "--shard-number", "0"
    )
    assert skipped.returncode == 0, skipped.stderr
    await wait_until(lambda: ("s", 3) in reader.delivered())
    assert reader.delivered() == [("s", 1), ("s", 3)]


async def test_without_policy_failures_are_retried_until_the_handler_recovers(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    reader = start_reader("rs-retry", fail_every=3)
    cos = await start_with(start_cos, reader, num_shards=2)
    entities = ["r1", "r2", "r3"]
    for _ in range(10):
        await asyncio.gather(*(cos.stub.ProcessCommand(request(e, add=[1])) for e in entities))
    await cos.stub.ProcessCommand(request("r1", add=[1], poison=True))
    await cos.stub.ProcessCommand(request("r1", add=[1]))
    await wait_until(lambda: len([r for r in reader.records("attempt") if r["poison"]]) >= 3)
    assert ("r1", 11) not in reader.delivered()
    reader.heal()
    await wait_until(lambda: ("r1", 12) in reader.delivered())
    by_entity = revisions_by_entity(reader)
    assert by_entity["r1"] == list(range(1, 13))
    assert by_entity["r2"] == by_entity["r3"] == list(range(1, 11))
    assert len(reader.records("attempt")) > len(reader.delivered()), "failures happened"


async def test_paused_shard_stays_paused_across_restart_then_delivers_backlog(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    reader = start_reader("rs-pause")
    cos = await start_with(start_cos, reader, num_shards=4)
    paused_entity = entities_in(0, 4, 1, "paused-")[0]
    other_entity = entities_in(1, 4, 1, "other-")[0]
    reply = await manager(cos).PauseReadSideByShard(
        manager_pb2.PauseReadSideByShardRequest(read_side_id="rs-pause", cluster_shard_number=0)
    )
    assert reply.successful
    for _ in range(3):
        await cos.stub.ProcessCommand(request(paused_entity, add=[1]))
        await cos.stub.ProcessCommand(request(other_entity, add=[1]))
    await wait_until(lambda: (other_entity, 3) in reader.delivered())
    await asyncio.sleep(0.5)
    assert all(e != paused_entity for e, _ in reader.delivered())

    await cos.channel.close()
    cos.runtime.stop()
    cos = await start_with(start_cos, reader, num_shards=4, port=cos.settings.server.port)
    await cos.stub.ProcessCommand(request(paused_entity, add=[1]))
    await cos.stub.ProcessCommand(request(other_entity, add=[1]))
    await wait_until(lambda: (other_entity, 4) in reader.delivered())
    await asyncio.sleep(0.5)
    assert all(e != paused_entity for e, _ in reader.delivered()), "still paused after restart"

    await manager(cos).ResumeReadSideByShard(
        manager_pb2.ResumeReadSideByShardRequest(read_side_id="rs-pause", cluster_shard_number=0)
    )
    await wait_until(lambda: (paused_entity, 4) in reader.delivered())
    assert revisions_by_entity(reader)[paused_entity] == [1, 2, 3, 4]


async def test_restart_redelivers_one_read_side_and_leaves_the_other(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    a, b = start_reader("rs-again"), start_reader("rs-same")
    cos = await start_with(start_cos, a, b, num_shards=2)
    for i in range(5):
        await cos.stub.ProcessCommand(request(f"x{i}", add=[1]))
    await wait_until(lambda: len(a.delivered()) == 5 and len(b.delivered()) == 5)
    reply = await manager(cos).RestartReadSide(
        manager_pb2.RestartReadSideRequest(read_side_id="rs-again")
    )
    assert reply.successful
    await wait_until(lambda: len(a.delivered()) == 10)
    assert sorted(a.delivered()[5:]) == sorted(a.delivered()[:5])
    await asyncio.sleep(0.5)
    assert len(b.delivered()) == 5


async def test_auto_start_false_starts_paused_and_disabled_never_runs(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    lazy, off = start_reader("rs-lazy"), start_reader("rs-off")
    cos = await start_with(
        start_cos, lazy.config(auto_start=False), off.config(enabled=False), num_shards=2
    )
    for i in range(4):
        await cos.stub.ProcessCommand(request(f"y{i}", add=[1]))
    await asyncio.sleep(1.5)
    assert lazy.records("attempt") == [] and off.records("attempt") == []
    await manager(cos).ResumeReadSide(manager_pb2.ResumeReadSideRequest(read_side_id="rs-lazy"))
    await manager(cos).ResumeReadSide(manager_pb2.ResumeReadSideRequest(read_side_id="rs-off"))
    await wait_until(lambda: len(lazy.delivered()) == 4)
    await asyncio.sleep(0.5)
    assert off.records("attempt") == []


async def test_manager_refuses_unknown_read_sides_and_shards(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    reader = start_reader("rs-known")
    cos = await start_with(start_cos, reader, num_shards=4)
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await manager(cos).PauseReadSide(manager_pb2.PauseReadSideRequest(read_side_id="nope"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (unknown.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as out_of_range:
        await manager(cos).GetLatestOffsetByShard(
            manager_pb2.GetLatestOffsetByShardRequest(
                read_side_id="rs-known", cluster_shard_number=4
            )
        )
    assert out_of_range.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "0..3" in (out_of_range.value.details() or "")


async def test_a_catch_up_in_batches_crosses_a_pause_a_skip_and_a_restart_in_order(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    """350 events of one shard caught up in batches of 100, each next batch read while the
    one before is delivered: paused and resumed in the middle, one poisoned event skipped
    alone, then everything again after a restart, never a gap or a reorder."""
    reader = start_reader("rs-batches", FailurePolicy.SKIP)
    cos = await start_with(start_cos, reader, num_shards=1)
    operator = manager(cos)
    await operator.PauseReadSide(manager_pb2.PauseReadSideRequest(read_side_id="rs-batches"))
    entities = [f"b{i}" for i in range(10)]
    for entity_id in entities[:5]:
        await cos.stub.ProcessCommand(request(entity_id, repeat=35))
    await cos.stub.ProcessCommand(request("poisoned", add=[1], poison=True))
    for entity_id in entities[5:]:
        await cos.stub.ProcessCommand(request(entity_id, repeat=35))
    journaled = {(e, r) for e in entities for r in range(1, 36)}

    await operator.ResumeReadSide(manager_pb2.ResumeReadSideRequest(read_side_id="rs-batches"))
    await wait_until(lambda: len(reader.delivered()) >= 120, what="the catch-up under way")
    await operator.PauseReadSide(manager_pb2.PauseReadSideRequest(read_side_id="rs-batches"))
    await asyncio.sleep(0.5)  # what was in flight ends
    held = len(reader.delivered())
    await asyncio.sleep(0.5)
    assert len(reader.delivered()) == held < 350, "deliveries went on while paused"
    await operator.ResumeReadSide(manager_pb2.ResumeReadSideRequest(read_side_id="rs-batches"))
    await wait_until(lambda: set(reader.delivered()) >= journaled, what="every event")
    first_pass = reader.delivered()
    # The policy skipped the one event that failed, once tried, and nothing of its batch
    # with it.
    poisoned = [r for r in reader.records("attempt") if r["entity_id"] == "poisoned"]
    assert len(poisoned) == 1, poisoned
    assert set(first_pass) == journaled
    assert_in_order(first_pass)

    await operator.RestartReadSide(manager_pb2.RestartReadSideRequest(read_side_id="rs-batches"))
    await wait_until(lambda: len(reader.delivered()) >= 2 * 350, what="the second pass")
    second_pass = reader.delivered()[len(first_pass) :]
    assert set(second_pass) == journaled
    assert_in_order(second_pass)
    await wait_until(lambda: offsets_match_journal(db, "rs-batches"), what="offsets stored")


def assert_in_order(delivered: list[tuple[str, int]]) -> None:
    """Each entity's events arrived in revision order, none skipped (a redelivery after a
    pause may go back, never forward past one not yet delivered)."""
    highest: dict[str, int] = defaultdict(int)
    for entity_id, revision in delivered:
        assert revision <= highest[entity_id] + 1, f"{entity_id}: {revision} came too early"
        highest[entity_id] = max(highest[entity_id], revision)
