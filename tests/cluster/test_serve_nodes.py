"""``cos serve`` as operators run it: one per node of a ``ray start`` cluster.

Each node is a real ``ray start`` (its own raylet and ``--temp-dir``); each ``cos serve``
joins the cluster and finds its own node through ``COS_RAY_TEMP_DIR``. SIGTERM to one of them
must hand its shards over before it exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from chief_of_state.v1 import service_pb2
from cos.postgres import DatabaseTarget
from cos.sharding import shard_of
from tests.support.checks import Load, assert_journal_consistent, journal_revisions
from tests.support.commands import request
from tests.support.database import db_env, drop_schema
from tests.support.processes import free_port
from tests.support.raynodes import RAY_ENV, NodeServe, RayNode
from tests.support.serve import COS, serve_env
from tests.support.waiting import wait_until


@pytest.fixture
async def node_serves(
    ray_nodes: list[RayNode], database: DatabaseTarget, write_handler: int
) -> AsyncIterator[list[NodeServe]]:
    common = {
        **db_env(database),
        "COS_NUM_SHARDS": "8",
        "COS_ADDRESS": "0.0.0.0",  # peers reach it at the node's address
        "COS_CLUSTER_NAME": f"serve{os.getpid()}",
        **RAY_ENV,
    }
    head, worker = ray_nodes
    # Both spellings of the cluster address: the flag and COS_RAY_ADDRESS.
    first_env = serve_env(write_handler, free_port(), **common, COS_RAY_TEMP_DIR=head.temp_dir)
    first = NodeServe(first_env, "--address", head.address)
    serves = [first]
    try:
        second_env = serve_env(
            write_handler,
            free_port(),
            **common,
            COS_RAY_TEMP_DIR=worker.temp_dir,
            COS_RAY_ADDRESS=worker.address,
        )
        serves.append(NodeServe(second_env))
        yield serves
    finally:
        for serve in serves:
            await serve.channel.close()
            serve.process.stop()


async def owners(db: asyncpg.Connection) -> dict[int, tuple[str, int]]:
    """shard -> (owner, epoch) as the leases in PostgreSQL say."""
    rows = await db.fetch("SELECT shard, owner, epoch FROM cos_shard_leases")
    return {row["shard"]: (row["owner"], row["epoch"]) for row in rows}


async def test_cos_serve_per_node_forwards_and_hands_over_on_sigterm(
    node_serves: list[NodeServe], db: asyncpg.Connection
) -> None:
    staying, leaving = node_serves

    async def balanced() -> bool:
        found = await owners(db)
        counts = Counter(owner for owner, _ in found.values())
        return len(found) == 8 and counts == {staying.host_id: 4, leaving.host_id: 4}

    await wait_until(balanced, 60, "the shards to be split between the two nodes")
    assert staying.host_id != leaving.host_id  # each cos serve found its own node

    # Either port answers for every entity, with the same reply.
    for i in range(8):
        entity_id = f"node-{i}"
        sender, other = (staying, leaving) if i % 2 else (leaving, staying)
        sent = await sender.stub.ProcessCommand(request(entity_id, add=[i]))
        got = await other.stub.GetState(service_pb2.GetStateRequest(entity_id=entity_id))
        assert (got.state, got.meta) == (sent.state, sent.meta)

    before = await owners(db)
    load = Load(
        {"staying": staying.stub, "leaving": leaving.stub}, [f"term-{i}" for i in range(40)]
    )
    load.start()
    await asyncio.sleep(2)
    leaving.process.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    code = await asyncio.to_thread(leaving.process.proc.wait, 120)
    print(f"cos serve exited {code} after {time.monotonic() - began:.1f} s")
    load.targets = ["staying"]
    await asyncio.sleep(2)
    await load.stop()

    assert code == 0, leaving.process.output
    log = leaving.process.output
    assert "handing shards over" in log
    assert "failed" not in log and "still in flight" not in log, log
    after = await owners(db)
    assert {owner for owner, _ in after.values()} == {staying.host_id}
    for shard, (owner, epoch) in before.items():
        assert after[shard][1] == (epoch if owner == staying.host_id else epoch + 1), shard
    # A client of the leaving node sees UNAVAILABLE once its port closes, or CANCELLED for
    # a call gRPC accepted but never handed to the servicer before the server stopped
    # (gRPC's own graceful stop does this; such a call never ran). Nothing else.
    assert set(load.errors) <= {"UNAVAILABLE", "CANCELLED"}, load.errors
    assert sum(len(acked) for acked in load.acked.values()) > 50
    assert_journal_consistent(await journal_revisions(db), load)


async def test_a_hand_over_in_a_burst_on_one_entity_loses_and_doubles_nothing(
    node_serves: list[NodeServe], db: asyncpg.Connection
) -> None:
    """32 clients on one entity (its commands pipelined) through both nodes, and the node
    that owns its shard leaves on SIGTERM: nothing acknowledged is lost, the entity's
    journal has no gap, and callers see UNAVAILABLE at most."""
    staying, leaving = node_serves

    async def split() -> bool:
        return len({owner for owner, _ in (await owners(db)).values()}) == 2

    await wait_until(split, 60, "the shards to be split between the two nodes")
    found = await owners(db)
    hot = next(
        entity_id
        for entity_id in (f"hot-{i}" for i in range(1000))
        if found[shard_of(entity_id, 8)][0] == leaving.host_id
    )
    load = Load({"staying": staying.stub, "leaving": leaving.stub}, [hot] * 32, pause_on_error=0.05)
    load.start(workers=32)
    await asyncio.sleep(2)
    leaving.process.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(leaving.process.proc.wait, 120)
    load.targets = ["staying"]
    acked_at_leave = len(load.acked[hot])
    await asyncio.sleep(2)
    await load.stop()

    assert code == 0, leaving.process.output
    assert set(load.errors) <= {"UNAVAILABLE", "CANCELLED"}, (load.errors, load.said)
    assert len(load.acked[hot]) > acked_at_leave + 50  # it went on, on the other node
    assert_journal_consistent(await journal_revisions(db), load)


async def refused(serve: NodeServe, **changes: str) -> str:
    """Start ``cos serve`` like ``serve`` but with ``changes``; it must exit 2: its last line."""
    env = {**serve.env, "COS_PORT": str(free_port()), **changes}
    result = await asyncio.to_thread(
        subprocess.run,
        [*COS, "serve", *serve.args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


async def test_cos_serve_refuses_a_taken_node_and_other_settings_then_replaces_an_idle_runtime(
    node_serves: list[NodeServe], database: DatabaseTarget
) -> None:
    first, second = node_serves
    taken = await refused(first)
    assert taken.startswith(f"cos: {first.host_id} already serves Ray node"), taken
    assert "COS_RAY_TEMP_DIR" in taken
    elsewhere = f"{database.schema}_other"  # cos serve migrates it before it is refused
    try:
        await refused_then_replaced(first, second, database.schema, elsewhere)
    finally:
        await drop_schema(database.with_schema(elsewhere))


async def refused_then_replaced(
    first: NodeServe, second: NodeServe, schema: str, elsewhere: str
) -> None:
    mismatch = await refused(first, COS_DB_SCHEMA=elsewhere)
    assert mismatch.startswith("cos: runtime 'serve"), mismatch
    assert f"schema {schema!r}" in mismatch and f"schema {elsewhere!r}" in mismatch
    # The refused processes left the running ones alone.
    reply = await first.stub.ProcessCommand(request("after-refusal", add=[1]))
    assert reply.meta.revision_number == 1

    # Once every node has left, the runtime's name may be reused with other settings.
    assert second.process.stop() == 0 and first.process.stop() == 0
    again = NodeServe({**first.env, "COS_DB_SCHEMA": elsewhere}, *first.args)
    try:
        assert "replacing the idle coordinator" in again.process.output
        reply = await again.stub.ProcessCommand(request("after-refusal", add=[1]))
        assert reply.meta.revision_number == 1  # a new journal
    finally:
        await again.channel.close()
        assert again.process.stop() == 0
