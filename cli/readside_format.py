"""What ``cos-cli readside`` prints (pure formatting)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from chief_of_state.v1 import common_pb2
from cos.v1 import readside_pb2

PAST = {
    "pause": "paused",
    "resume": "resumed",
    "skip": "skipped the current event of",
    "restart": "restarted",
}


def offsets_table(read_side_id: str, offsets: Sequence[common_pb2.ReadSideOffset]) -> Table:
    """One row per shard: its number and the last delivered journal position."""
    table = Table(title=f"read side {read_side_id}")
    table.add_column("shard", justify="right")
    table.add_column("offset", justify="right")
    for offset in sorted(offsets, key=lambda o: o.cluster_shard_number):
        table.add_row(str(offset.cluster_shard_number), str(offset.offset))
    return table


def action_message(action: str, read_side_id: str, shard: int | None) -> str:
    """The line printed after a successful change."""
    where = "all shards" if shard is None else f"shard {shard}"
    return f"{PAST[action]} read side {read_side_id} in {where}"


def error_message(code: str, details: str) -> str:
    """The line printed for a failed call."""
    return f"error: {code}: {details}"


def state_of(row: readside_pb2.ReadSideShardStatus) -> str:
    """running, paused, or stopped and why."""
    if row.stopped_reason:
        return f"stopped at {row.stopped_reason}"
    return "paused" if row.paused else "running"


def status_table(read_side_id: str, rows: Sequence[readside_pb2.ReadSideShardStatus]) -> Table:
    """One row per shard: offset, the journal's last position, how far behind, state."""
    table = Table(title=f"read side {read_side_id}")
    for column in ("shard", "offset", "journal", "behind"):
        table.add_column(column, justify="right")
    table.add_column("state")
    for row in sorted(rows, key=lambda r: r.cluster_shard_number):
        behind = max(0, row.journal_position - row.offset)
        table.add_row(
            str(row.cluster_shard_number),
            str(row.offset),
            str(row.journal_position),
            str(behind),
            state_of(row),
        )
    return table
