"""What ``cos-cli readside`` prints (pure formatting)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timezone

from rich.console import Group
from rich.table import Table
from rich.text import Text

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
    """running, paused or stopped (why it stopped is printed under the table)."""
    if row.stopped_reason:
        return "stopped"
    return "paused" if row.paused else "running"


def error_time(row: readside_pb2.ReadSideShardStatus) -> str:
    """When the last delivery failure was recorded, in UTC; "-" when there is none."""
    if not row.HasField("last_error_time"):
        return "-"
    return row.last_error_time.ToDatetime(tzinfo=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def status_table(read_side_id: str, rows: Sequence[readside_pb2.ReadSideShardStatus]) -> Table:
    """One row per shard: offset, the journal's last position, how far behind in events
    and in seconds, state, and when the last delivery failed."""
    table = Table(title=f"read side {read_side_id}")
    for column in ("shard", "offset", "journal", "behind", "lag (s)"):
        table.add_column(column, justify="right")
    table.add_column("state")
    table.add_column("last error at", no_wrap=True)
    for row in sorted(rows, key=lambda r: r.cluster_shard_number):
        behind = max(0, row.journal_position - row.offset)
        table.add_row(
            str(row.cluster_shard_number),
            str(row.offset),
            str(row.journal_position),
            str(behind),
            f"{row.lag_seconds:.1f}",
            state_of(row),
            error_time(row),
        )
    return table


def status_notes(rows: Sequence[readside_pb2.ReadSideShardStatus]) -> list[str]:
    """The words the table has no room for: why each stopped shard stopped, and each
    shard's last failure (once, when it is the one the shard stopped at)."""
    notes = []
    for row in sorted(rows, key=lambda r: r.cluster_shard_number):
        shard = row.cluster_shard_number
        if row.stopped_reason:
            notes.append(f"shard {shard} stopped at {row.stopped_reason}")
        if row.last_error and row.last_error != row.stopped_reason:
            notes.append(f"shard {shard} last error at {error_time(row)}: {row.last_error}")
    return notes


def status_view(read_side_id: str, rows: Sequence[readside_pb2.ReadSideShardStatus]) -> Group:
    """What ``cos-cli readside status`` prints: the table, then its notes (as plain text:
    a handler's message is never read as markup)."""
    notes = [Text(note) for note in status_notes(rows)]
    return Group(status_table(read_side_id, rows), *notes)
