"""``cos-cli cluster health`` on a real three-node Ray cluster: every host, its address,
its shards, its entities and its heartbeat, through any node's port."""

from __future__ import annotations

import asyncio
from typing import Any

from cli.cluster_format import shard_ranges
from tests.support.commands import request
from tests.support.runtimes import ClusterRuntime
from tests.support.serve import run_cli
from tests.support.waiting import wait_until


def health_rows(output: str) -> dict[str, list[str]]:
    """The rows of a printed health table, by host id."""
    rows = [line.replace("│", " ").split() for line in output.splitlines() if "│" in line]
    return {row[0]: row[1:] for row in rows}


async def health(cos: ClusterRuntime, host_id: str) -> dict[str, list[str]]:
    port = cos.runtime.addresses[host_id].rsplit(":", 1)[1]
    result = await run_cli(
        "cli.admin", "cluster", "health", "--cos-host", "127.0.0.1", "--cos-port", port
    )
    assert result.returncode == 0, result.stderr
    return health_rows(result.stdout)


async def test_cluster_health_shows_every_host_its_shards_and_a_recent_heartbeat(
    cluster_cos: Any,
) -> None:
    cos: ClusterRuntime = await cluster_cos()
    host_ids = sorted(cos.stubs)
    assert len(host_ids) == 3
    await cos.stubs[host_ids[0]].ProcessCommand(request("healthy", add=[1]))
    owned: dict[str, list[int]] = {h: [] for h in host_ids}
    for ownership in await cos.table():
        owned[ownership.host_id].append(ownership.shard)

    async def every_heartbeat_seen() -> bool:
        rows = await health(cos, host_ids[0])
        return all(rows.get(h, ["none"] * 6)[4] != "none" for h in host_ids)

    await wait_until(every_heartbeat_seen, 30, "every host's heartbeat")
    for asked in host_ids:  # any node's port answers alike
        rows = await health(cos, asked)
        assert sorted(rows) == host_ids
        for host_id, (address, count, numbers, _active, age, *at) in rows.items():
            assert address == cos.runtime.addresses[host_id]
            assert int(count) == len(owned[host_id]) and at[:2] == ["s", "ago"]
            assert numbers == shard_ranges(owned[host_id])
            assert 0.0 <= float(age) < 5.0, (host_id, age)
        assert sum(int(row[1]) for row in rows.values()) == cos.settings.cluster.num_shards
        assert sum(int(row[3]) for row in rows.values()) == 1

    # A host that leaves hands its shards over and drops its heartbeat row.
    leaving = host_ids[2]
    await asyncio.to_thread(cos.runtime.leave, leaving)
    rows = await health(cos, host_ids[0])
    assert sorted(rows) == host_ids[:2]
    assert sum(int(row[1]) for row in rows.values()) == cos.settings.cluster.num_shards
