"""The HTTP/JSON API on every node of a cluster: each node answers for every entity,
forwarding to the entity's owner as gRPC calls are."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.commands import base64_command
from tests.support.runtimes import ClusterRuntime, Nodes


async def test_every_node_serves_http_for_every_entity(cluster_cos: Any, nodes: Nodes) -> None:
    cos: ClusterRuntime = await cluster_cos(http_enabled=True)
    bases = [f"http://127.0.0.1:{port}" for port in nodes.http_ports.values()]
    assert len(bases) == 3
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(9):  # 9 entities over 16 shards: most are owned by another node
            entity_id = f"http-spread-{i}"
            sent = await client.post(
                f"{bases[i % 3]}/v1/commands/{entity_id}/process",
                json={"command": base64_command(add=[i, 1])},
            )
            assert sent.status_code == 200, sent.text
            for base in bases:
                got = await client.get(f"{base}/v1/entities/{entity_id}/state")
                assert got.status_code == 200, got.text
                assert got.json() == sent.json(), base
            again = await client.post(
                f"{bases[(i + 1) % 3]}/v1/commands/{entity_id}/process",
                json={"command": base64_command(add=[1])},
            )
            assert again.json()["meta"]["revision_number"] == 3, again.text
    assert len(cos.runtime.hosts) == 3
