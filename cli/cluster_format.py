"""What ``cos shards`` and ``cos-cli cluster shards`` print (pure formatting)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from cos.sharding.report import ShardReport
from cos.v1 import cluster_pb2


def from_response(response: cluster_pb2.GetShardsResponse) -> list[ShardReport]:
    """The rows of a ``GetShardsResponse``."""
    return [
        ShardReport(
            row.shard,
            row.host_id,
            row.address,
            row.epoch,
            row.active_entities if row.HasField("active_entities") else None,
        )
        for row in response.shards
    ]


def shards_table(rows: Sequence[ShardReport]) -> Table:
    """One row per shard: owner host, its address, the lease epoch and entities in memory."""
    hosts = {row.host_id for row in rows if row.address}
    table = Table(title=f"{len(rows)} shards on {len(hosts)} hosts")
    for column in ("shard", "host", "address", "epoch", "active entities"):
        table.add_column(column, justify="right" if column != "host" else "left")
    for row in rows:
        table.add_row(
            str(row.shard),
            row.host_id,
            row.address or "(not live)",
            str(row.epoch),
            "?" if row.active_entities is None else str(row.active_entities),
        )
    return table
