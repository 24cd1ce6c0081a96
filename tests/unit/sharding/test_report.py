"""Host health from the shard report and the heartbeat rows (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from cos.sharding import HostHealth, ShardReport, host_health
from cos.storage import Heartbeat

AT = datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_every_host_with_a_shard_or_a_heartbeat_by_host_id() -> None:
    report = [
        ShardReport(0, "h2", "10.0.0.2:9000", 1, 3),
        ShardReport(1, "h1", "10.0.0.1:9000", 4, 10),
        ShardReport(2, "h2", "10.0.0.2:9000", 1, 4),
        ShardReport(3, "gone", "", 2, None),  # its owner is not a live host
    ]
    beats = [
        Heartbeat("h1", "10.0.0.1:9000", AT, 0.5),
        Heartbeat("idle", "10.0.0.9:9000", AT, 0.7),  # owns no shard
        Heartbeat("gone", "10.0.0.7:9000", AT, 40.0),
    ]
    assert host_health(report, beats) == [
        HostHealth("gone", "10.0.0.7:9000", (3,), None, beats[2]),
        HostHealth("h1", "10.0.0.1:9000", (1,), 10, beats[0]),
        HostHealth("h2", "10.0.0.2:9000", (0, 2), 7, None),
        HostHealth("idle", "10.0.0.9:9000", (), 0, beats[1]),
    ]


def test_one_silent_shard_makes_the_host_count_unknown() -> None:
    report = [ShardReport(0, "h", "a", 1, 5), ShardReport(1, "h", "a", 1, None)]
    assert host_health(report, [])[0].active_entities is None
