"""How the runtime reaches the write handler (TLS) and how a fenced host behaves."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import grpc
import pytest

from cos.postgres import DatabaseTarget, PoolLimits, PostgresDatastore, PostgresLeaseStore
from cos.sharding import shard_of
from tests.support.commands import request, state_of
from tests.support.processes import start_write_handler
from tests.support.runtimes import StartRuntime
from tests.support.tls import self_signed_localhost


async def test_tls_to_the_write_handler(start_cos: StartRuntime, tmp_path: Path) -> None:
    cert, key = self_signed_localhost(tmp_path)
    handler, port = start_write_handler("--tls-cert", str(cert), "--tls-key", str(key))
    try:
        plain = await start_cos(write_side_host="localhost", write_side_port=port)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await plain.stub.ProcessCommand(request("tls-1", add=[1]))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        secure = await start_cos(
            write_side_host="localhost",
            write_side_port=port,
            write_side_use_tls=True,
            write_side_tls_ca_file=str(cert),
        )
        reply = await secure.stub.ProcessCommand(request("tls-2", add=[4]))
        assert state_of(reply)["total"] == 4
    finally:
        handler.stop()


async def test_host_whose_lease_was_taken_cannot_write(
    start_cos: StartRuntime, database: DatabaseTarget, db: asyncpg.Connection
) -> None:
    cos = await start_cos(num_shards=4, forward_retry_seconds=1.0)
    await cos.stub.ProcessCommand(request("fenced", add=[1]))
    shard = shard_of("fenced", 4)
    # Another owner takes the shard's lease, as a new host would after a partition.
    other = await PostgresDatastore.open(database, PoolLimits(max_size=2))
    try:
        await PostgresLeaseStore(other).acquire_shards([shard], "new-owner")
    finally:
        await other.close()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cos.stub.ProcessCommand(request("fenced", add=[1]))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "stale" in (refused.value.details() or "")
    host = next(iter(cos.runtime.hosts.values()))
    assert (await host.stats.remote())["fenced_writes"] == 1
    rows = await db.fetch("SELECT revision FROM cos_journal WHERE entity_id = 'fenced'")
    assert [row["revision"] for row in rows] == [1]
