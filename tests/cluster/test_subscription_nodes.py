"""A SubscribeAll stream on a surviving node of a three-node cluster, while the owner of
some shards is killed under load: every committed event arrives once, in shard order."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import grpc

from cos.v1 import subscription_pb2
from tests.support.checks import Load, assert_journal_consistent, journal_revisions
from tests.support.runtimes import ClusterRuntime, Nodes
from tests.support.subscriptions import Event, check_order, keys, stub_on
from tests.support.waiting import wait_until


async def collect(call: Any, into: list[Event]) -> None:
    while (message := await call.read()) is not grpc.aio.EOF:
        into.append(message)


async def test_a_subscriber_on_a_surviving_node_loses_nothing_when_an_owner_dies(
    cluster_cos: Any, nodes: Nodes, db: asyncpg.Connection
) -> None:
    cos: ClusterRuntime = await cluster_cos(subscription_enabled=True)
    victim_node = min(nodes.cluster.worker_nodes, key=lambda node: node.node_id)
    victim = next(h for h in cos.runtime.hosts if h.endswith(victim_node.node_id[:12]))
    survivors = [h for h in cos.stubs if h != victim]
    victims_shards = {o.shard for o in await cos.table() if o.host_id == victim}
    assert victims_shards, "the victim owns no shard"
    channel = grpc.aio.insecure_channel(cos.runtime.addresses[survivors[0]])
    cos.channels.append(channel)
    call = stub_on(channel).SubscribeAll(subscription_pb2.SubscribeAllRequest(from_beginning=True))
    await call.initial_metadata()
    got: list[Event] = []
    reading = asyncio.create_task(collect(call, got))
    load = Load(cos.stubs, [f"sub-{i}" for i in range(40)], pause_on_error=0.1)
    load.targets = survivors
    load.start()

    async def some_written() -> bool:
        return len(got) >= 50

    await wait_until(some_written, 30, "events before the kill")
    nodes.cluster.remove_node(victim_node, allow_graceful=False)

    async def replaced() -> bool:
        table = await cos.table()
        return len(table) == 16 and all(o.host_id != victim for o in table)

    await wait_until(replaced, 60, "the lost node's shards to be owned again")
    await wait_until(some_written_after(got, len(got)), 30, "events after the failover")
    await load.stop()
    revisions = await journal_revisions(db)
    assert_journal_consistent(revisions, load)
    expected = {(e, r) for e, found in revisions.items() for r in found}

    async def all_received() -> bool:
        return len(got) >= len(expected)

    await wait_until(all_received, 30, "every event on the stream")
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading
    call.cancel()
    assert len(keys(got)) == len(set(keys(got))) == len(expected)
    assert set(keys(got)) == expected
    check_order(got)
    assert {e.shard for e in got} >= victims_shards


def some_written_after(got: list[Event], count: int) -> Any:
    async def check() -> bool:
        return len(got) >= count + 100

    return check
