"""What ``cos-cli cluster health`` prints (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rich.console import Console

from cli.cluster_format import health_from_response, health_table, shard_ranges
from cos.sharding import HostHealth
from cos.storage import Heartbeat
from cos.v1 import cluster_pb2

AT = datetime(2026, 12, 1, 10, 0, 3, tzinfo=timezone.utc)


def rendered(renderable: object) -> list[list[str]]:
    console = Console(width=200, record=True)
    console.print(renderable)
    lines = console.export_text().replace("┃", " ").replace("│", " ").splitlines()
    return [line.split() for line in lines]


def test_shard_ranges() -> None:
    assert shard_ranges([]) == "-"
    assert shard_ranges([4]) == "4"
    assert shard_ranges([7, 0, 1, 2, 3, 9, 10]) == "0-3,7,9-10"


def test_a_row_per_host_with_shards_entities_and_heartbeat() -> None:
    plus_two = timezone(timedelta(hours=2))
    hosts = [
        HostHealth("h1", "10.0.0.1:9000", (0, 1, 2), 12, Heartbeat("h1", "x", AT, 0.42)),
        HostHealth("h2", "", (3,), None, None),
        HostHealth("h3", "10.0.0.3:9000", (), 0, Heartbeat("h3", "x", AT.astimezone(plus_two), 9)),
    ]
    body = rendered(health_table(hosts))
    assert body[0] == ["3", "hosts,", "4", "shards"]
    assert body[2][:5] == ["host", "address", "shards", "numbers", "entities"]
    rows = [line for line in body if line and line[0].startswith("h")][1:]  # after the header
    assert rows == [
        ["h1", "10.0.0.1:9000", "3", "0-2", "12", "0.4", "s", "ago", "2026-12-01", "10:00:03Z"],
        ["h2", "(unknown)", "1", "3", "?", "none", "-"],
        ["h3", "10.0.0.3:9000", "0", "-", "0", "9.0", "s", "ago", "2026-12-01", "10:00:03Z"],
    ]


def test_rows_from_the_response() -> None:
    response = cluster_pb2.GetClusterHealthResponse(
        hosts=[
            cluster_pb2.HostHealth(
                host_id="h1",
                address="a:1",
                shards=[0, 2],
                active_entities=5,
                heartbeat_age_seconds=1.5,
            ),
            cluster_pb2.HostHealth(host_id="h2", address="b:2"),
        ]
    )
    response.hosts[0].heartbeat_time.FromDatetime(AT)
    assert health_from_response(response) == [
        HostHealth("h1", "a:1", (0, 2), 5, Heartbeat("h1", "a:1", AT, 1.5)),
        HostHealth("h2", "b:2", (), None, None),
    ]
