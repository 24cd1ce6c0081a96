"""What ``cos-cli readside status`` prints, from proto rows (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Console

from cli.readside_format import error_time, state_of, status_notes, status_table, status_view
from cos.v1 import readside_pb2

FAILED_AT = datetime(2026, 12, 1, 10, 0, 3, tzinfo=timezone.utc)


def shard(number: int, **fields: object) -> readside_pb2.ReadSideShardStatus:
    row = readside_pb2.ReadSideShardStatus(cluster_shard_number=number, **fields)  # type: ignore[arg-type]
    if "last_error" in fields:
        row.last_error_time.FromDatetime(FAILED_AT)
    return row


def rendered(renderable: object) -> list[list[str]]:
    console = Console(width=200, record=True)
    console.print(renderable)
    lines = console.export_text().splitlines()
    return [line.replace("│", " ").replace("┃", " ").split() for line in lines]


def test_each_shard_shows_offset_journal_behind_lag_state_and_error_time() -> None:
    rows = [
        shard(1, offset=3, journal_position=7, paused=True, lag_seconds=12.345),
        shard(0, offset=5, journal_position=5),
        shard(2, offset=1, journal_position=2, stopped_reason="x", last_error="x", lag_seconds=4),
    ]
    body = rendered(status_table("rs", rows))
    assert [
        "shard",
        "offset",
        "journal",
        "behind",
        "lag",
        "(s)",
        "state",
        "last",
        "error",
        "at",
    ] in body
    table_rows = [line for line in body if line and line[0].isdigit()]
    assert table_rows == [
        ["0", "5", "5", "0", "0.0", "running", "-"],
        ["1", "3", "7", "4", "12.3", "paused", "-"],
        ["2", "1", "2", "1", "4.0", "stopped", "2026-12-01", "10:00:03Z"],
    ]


def test_state_and_error_time() -> None:
    assert state_of(shard(0)) == "running"
    assert state_of(shard(0, paused=True)) == "paused"
    assert state_of(shard(0, paused=True, stopped_reason="why")) == "stopped"
    assert error_time(shard(0)) == "-"
    assert error_time(shard(0, last_error="boom")) == "2026-12-01 10:00:03Z"


def test_notes_say_why_a_shard_stopped_and_its_last_error_once() -> None:
    reason = "position 4 (e rev 2): handler answered successful=false"
    rows = [
        shard(3, last_error="position 9 (f rev 1): [red]DEADLINE_EXCEEDED[/red]"),
        shard(1, stopped_reason=reason, last_error=reason),
        shard(2, stopped_reason=reason, last_error="position 5 (e rev 3): UNAVAILABLE"),
        shard(0),
    ]
    assert status_notes(rows) == [
        f"shard 1 stopped at {reason}",
        f"shard 2 stopped at {reason}",
        "shard 2 last error at 2026-12-01 10:00:03Z: position 5 (e rev 3): UNAVAILABLE",
        "shard 3 last error at 2026-12-01 10:00:03Z:"
        " position 9 (f rev 1): [red]DEADLINE_EXCEEDED[/red]",
    ]
    # The handler's words are printed as they are, never as rich markup.
    text = Console(width=200, record=True)
    text.print(status_view("rs", rows))
    assert "[red]DEADLINE_EXCEEDED[/red]" in text.export_text()


def test_no_notes_while_every_shard_runs_without_failures() -> None:
    assert status_notes([shard(0, offset=2, journal_position=2), shard(1, paused=True)]) == []
