"""Idempotency keys and expected revisions across nodes: forwarded to the owner, and
remembered after the entity's shard moved to another host (real multi-node Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import grpc
import pytest

from cos.sharding import shard_of
from tests.support.checks import journal_revisions
from tests.support.commands import send
from tests.support.runtimes import ClusterRuntime, Nodes

KEY = "x-cos-idempotency-key"
EXPECTED = "x-cos-expected-revision"


async def test_a_keyed_retry_after_a_hand_over_gets_the_original_reply(
    cluster_cos: Any, nodes: Nodes, db: asyncpg.Connection
) -> None:
    cos: ClusterRuntime = await cluster_cos()
    leaving = next(h for h in cos.runtime.hosts if h.endswith(_worker(nodes)[:12]))
    owners = {o.shard: o.host_id for o in await cos.table()}
    entity_id = next(
        e for e in (f"moved-{i}" for i in range(200)) if owners[shard_of(e, 16)] == leaving
    )
    entry = next(h for h in cos.stubs if h != leaving)  # forwards to the owner
    first = await send(cos.stubs[entry], entity_id, f"{KEY}=m1", f"{EXPECTED}=0", add=[7])
    assert first.meta.revision_number == 1

    await asyncio.to_thread(cos.runtime.leave, leaving)
    owners = {o.shard: o.host_id for o in await cos.table()}
    new_owner = owners[shard_of(entity_id, 16)]
    assert new_owner != leaving
    for host in {entry, new_owner}:  # forwarded, and local to the new owner
        retried = await send(cos.stubs[host], entity_id, f"{KEY}=m1", f"{EXPECTED}=0", add=[7])
        assert retried == first
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await send(cos.stubs[entry], entity_id, f"{EXPECTED}=0", add=[7])
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await journal_revisions(db))[entity_id] == [1]


def _worker(nodes: Nodes) -> str:
    return str(min(nodes.cluster.worker_nodes, key=lambda node: node.node_id).node_id)
