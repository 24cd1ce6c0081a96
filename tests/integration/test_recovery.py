"""Recovery after a restart reads one record per entity, never the history."""

from __future__ import annotations

import asyncpg
import ray

from chief_of_state.v1 import service_pb2
from tests.support.commands import request, state_of
from tests.support.runtimes import StartRuntime


async def test_restart_serves_every_entity_last_state(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(num_shards=8)
    expected = {}
    for i in range(30):
        reply = await cos.stub.ProcessCommand(request(f"r-{i}", add=[1] * (i % 4 + 1)))
        expected[f"r-{i}"] = (reply.meta.revision_number, state_of(reply)["total"])
    before = ray.get(cos.runtime.coordinator.table.remote())
    await cos.channel.close()
    cos.runtime.stop()

    again = await start_cos(port=cos.settings.server.port, num_shards=8)
    after = ray.get(again.runtime.coordinator.table.remote())
    host_id = next(iter(again.runtime.hosts))
    assert [(o.shard, o.host_id) for o in after] == [(s, host_id) for s in range(8)]
    assert [o.epoch for o in after] == [o.epoch + 1 for o in before], "a new owner, a new epoch"
    for entity_id, (revision, total) in expected.items():
        got = await again.stub.GetState(service_pb2.GetStateRequest(entity_id=entity_id))
        assert (got.meta.revision_number, state_of(got)["total"]) == (revision, total)
    reply = await again.stub.ProcessCommand(request("r-3", add=[1]))
    assert reply.meta.revision_number == expected["r-3"][0] + 1
    served = ray.get(again.runtime.hosts[host_id].shards.remote())
    assert [(i.shard, i.epoch) for i in served] == [(o.shard, o.epoch) for o in after]
    assert sum(i.active_entities for i in served) == len(expected)


async def test_ten_thousand_events_recover_from_the_snapshot_alone(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos(snapshot_frequency=100, num_snapshots_to_retain=2)
    for _ in range(20):
        reply = await cos.stub.ProcessCommand(request("big", repeat=500))
    assert reply.meta.revision_number == 10_000
    snapshots = await db.fetch(
        "SELECT revision FROM cos_snapshots WHERE entity_id = 'big' ORDER BY 1"
    )
    assert [row["revision"] for row in snapshots] == [9_500, 10_000]
    await cos.channel.close()
    cos.runtime.stop()

    # Spoil every event: recovery that read any of them would fail to parse or
    # come back with the wrong state.
    spoiled = await db.execute(
        "UPDATE cos_journal SET payload = '\\xdeadbeef'::bytea WHERE entity_id = 'big'"
    )
    assert spoiled == "UPDATE 10000"

    again = await start_cos(port=cos.settings.server.port)
    got = await again.stub.GetState(service_pb2.GetStateRequest(entity_id="big"))
    assert got.meta.revision_number == 10_000
    assert state_of(got)["total"] == 10_000
    after = await again.stub.ProcessCommand(request("big", add=[1]))
    assert after.meta.revision_number == 10_001
    assert state_of(after)["total"] == 10_001
