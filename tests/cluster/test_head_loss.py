"""Losing Ray's head node: only the database may be a single point of failure.

Real ``ray start`` nodes, one ``cos serve`` each, with Ray's GCS fault tolerance on the
local Redis (``RAY_REDIS_ADDRESS`` on the head). Every process of the head node, its
``cos serve`` too, is SIGKILLed under load. The coordinator lived there (beside the first
``cos serve``), so the surviving node must take the head's shards over by their leases in
PostgreSQL, then hand some back to the coordinator once a head returns.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from cos.postgres import DatabaseTarget
from tests.support.checks import Load, assert_journal_consistent, journal_revisions
from tests.support.commands import request
from tests.support.headloss import HeadCluster
from tests.support.waiting import wait_until

FAILURE_TIMEOUT = 3.0
# How long the worker node's Ray processes outlive the head (Ray's default is 60 s).
RECONNECT_TIMEOUT = 15


@pytest.fixture
async def head_cluster(
    request: pytest.FixtureRequest, database: DatabaseTarget, write_handler: int
) -> AsyncIterator[HeadCluster]:
    """With Ray's GCS fault tolerance on Redis, unless the test's parameter is False."""
    # Blocking, on the loop: a cos serve's client channel belongs to it.
    cluster = HeadCluster.start(
        database,
        write_handler,
        redis=getattr(request, "param", True),
        failure_timeout=FAILURE_TIMEOUT,
        reconnect_timeout=RECONNECT_TIMEOUT,
    )
    try:
        yield cluster
    finally:
        for serve in cluster.serves.values():
            await serve.channel.close()
        await asyncio.to_thread(cluster.close)


async def owners(db: asyncpg.Connection) -> Counter[str]:
    rows = await db.fetch("SELECT owner FROM cos_shard_leases")
    return Counter(row["owner"] for row in rows)


@dataclass
class HeadLost:
    """Load on the survivor while the head is killed; when, and how long the move took."""

    load: Load
    killed_at: float
    moved: float


async def kill_head_under_load(
    cluster: HeadCluster, db: asyncpg.Connection, entities: list[str]
) -> HeadLost:
    """Wait for the shards to split, load the survivor, SIGKILL the head, and wait for
    the survivor to own every shard."""
    survivor, lost = cluster.serves["worker"], cluster.serves["head"]

    async def split() -> bool:
        return await owners(db) == {survivor.host_id: 4, lost.host_id: 4}

    await wait_until(split, 60, "the shards split between the two nodes")
    load = Load({"worker": survivor.stub}, entities)
    load.start()
    await asyncio.sleep(2)
    cluster.kill_head()
    killed_at = time.monotonic()

    async def all_on_survivor() -> bool:
        return await owners(db) == {survivor.host_id: 8}

    moved = await wait_until(all_on_survivor, 60, "the survivor to take the head's shards over")
    return HeadLost(load, killed_at, moved)


async def test_the_head_node_lost_and_back_with_gcs_fault_tolerance(
    head_cluster: HeadCluster, db: asyncpg.Connection
) -> None:
    cluster = head_cluster
    assert cluster.worker is not None
    survivor = cluster.serves["worker"]
    lost = await kill_head_under_load(cluster, db, [f"head-{i}" for i in range(40)])
    load, killed_at, moved = lost.load, lost.killed_at, lost.moved
    await asyncio.sleep(2)
    served = sum(len(a) for a in load.acked.values())
    print(f"shards taken over {moved:.1f} s after the head died; {served} commands acknowledged")
    # The node's actor writes to its cos serve's stderr, which the head's loss leaves be.
    log = survivor.process.output
    assert "now move by their leases in PostgreSQL" in log, log[-5000:]
    assert "took over shards" in log, log[-5000:]
    assert moved < FAILURE_TIMEOUT * 4 + 5  # detection, then one takeover round

    # A head comes back (Ray restores its control store from Redis), with its cos serve.
    back = cluster.restart_head()
    print(f"a new head served {time.monotonic() - killed_at:.1f} s after the old one died")
    load.stubs["head"] = back.stub
    load.targets = ["worker", "head"]

    async def split_again() -> bool:
        return await owners(db) == {survivor.host_id: 4, back.host_id: 4}

    await wait_until(split_again, 60, "the coordinator to place shards on the new head")
    reply = await back.stub.ProcessCommand(request("after-head-loss", add=[1]))
    assert reply.meta.revision_number == 1
    await asyncio.sleep(2)
    await load.stop()

    assert "the coordinator answers again" in survivor.process.output
    assert set(load.errors) <= {"UNAVAILABLE"}, load.errors
    assert sum(len(a) for a in load.acked.values()) > served > 50
    assert_journal_consistent(await journal_revisions(db), load)


@pytest.mark.parametrize("head_cluster", [False], indirect=True)
async def test_the_head_node_lost_without_gcs_fault_tolerance(
    head_cluster: HeadCluster, db: asyncpg.Connection
) -> None:
    cluster = head_cluster
    survivor = cluster.serves["worker"]
    entities = [f"nofo-{i}" for i in range(40)]
    lost = await kill_head_under_load(cluster, db, entities)
    load, killed_at, moved = lost.load, lost.killed_at, lost.moved
    # Every entity, of the head's shards too, is served by the survivor while Ray lets it.
    await asyncio.sleep(1)
    before = {e: max(load.acked[e], default=0) for e in entities}
    await asyncio.sleep(3)
    stalled = [e for e in entities if max(load.acked[e], default=0) <= before[e]]
    assert not stalled, (stalled, load.errors)
    # Then Ray gives up on its head: the node's processes, and its cos serve, exit.
    code = await asyncio.to_thread(survivor.process.proc.wait, RECONNECT_TIMEOUT * 4 + 30)
    lasted = time.monotonic() - killed_at
    await load.stop()
    print(
        f"shards taken over {moved:.1f} s after the head died; the survivor served until"
        f" {lasted:.1f} s (exit {code}); {sum(len(a) for a in load.acked.values())} acknowledged"
    )
    assert lasted > RECONNECT_TIMEOUT - 1
    assert set(load.errors) <= {"UNAVAILABLE"}, load.errors
    assert_journal_consistent(await journal_revisions(db), load)
