"""What ``cos shards`` prints (pure formatting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table


def shards_table(
    ownership: Sequence[Any], addresses: Mapping[str, str], active: Mapping[int, int]
) -> Table:
    """One row per shard: owner host, its address, the lease epoch and entities in memory."""
    table = Table(title=f"{len(ownership)} shards on {len(set(addresses))} hosts")
    for column in ("shard", "host", "address", "epoch", "active entities"):
        table.add_column(column, justify="right" if column != "host" else "left")
    for row in ownership:
        table.add_row(
            str(row.shard),
            row.host_id,
            addresses.get(row.host_id, "?"),
            str(row.epoch),
            str(active.get(row.shard, 0)),
        )
    return table
