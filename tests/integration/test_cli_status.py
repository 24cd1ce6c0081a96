"""``cos-cli readside status`` (lag in events and seconds, stops, last failures) and
``cos-cli cluster health`` against a running runtime."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import asyncpg

from cos.readside._config import FailurePolicy
from cos.sharding import host_prefix, shard_of
from tests.support.commands import request
from tests.support.readsides import Reader, start_reader, start_with
from tests.support.runtimes import StartRuntime
from tests.support.serve import ADMIN_TOKEN
from tests.support.waiting import wait_until

__all__ = ["start_reader"]  # the fixture, for pytest


async def cos_cli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``cos-cli ARGS`` on the runtime's port, on a terminal wide enough for one line a row."""
    where = ["--cos-host", "127.0.0.1", "--cos-port", str(port)]
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.admin", *args, *where],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", "COS_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    assert result.returncode == 0, result.stderr
    return result


def table_rows(output: str) -> dict[str, list[str]]:
    """The printed table's rows, by their first cell (the shard, or the host)."""
    rows = [line.replace("│", " ").split() for line in output.splitlines() if "│" in line]
    return {row[0]: row[1:] for row in rows}


def entities_in(shard: int, count: int, prefix: str) -> list[str]:
    found = (f"{prefix}{i}" for i in range(1000))
    return [e for e in found if shard_of(e, 2) == shard][:count]


async def stored_offset(db: asyncpg.Connection, read_side_id: str, shard: int) -> int:
    return int(
        await db.fetchval(
            "SELECT position FROM cos_read_side_offsets WHERE read_side_id = $1 AND shard = $2",
            read_side_id,
            shard,
        )
    )


async def test_a_paused_shard_falls_behind_in_events_and_seconds(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    reader = start_reader("rs-lag")
    cos = await start_with(start_cos, reader)
    port = cos.settings.server.port
    await cos_cli(port, "readside", "pause", "--id", "rs-lag", "--shard-number", "0")
    for entity in entities_in(0, 3, "p"):
        await cos.stub.ProcessCommand(request(entity, add=[1]))
    (running,) = entities_in(1, 1, "r")
    await cos.stub.ProcessCommand(request(running, add=[1]))
    await wait_until(lambda: reader.delivered() == [(running, 1)], what="shard 1's event")
    await wait_until(lambda: _is(stored_offset(db, "rs-lag", 1), 1), what="shard 1's offset")
    await asyncio.sleep(1.5)  # the oldest undelivered event is older than this

    status = await cos_cli(port, "readside", "status", "--id", "rs-lag")
    rows = table_rows(status.stdout)
    assert "lag (s)" in status.stdout and "last error at" in status.stdout, status.stdout
    offset, journal, behind, lag, *state = rows["0"]
    assert (offset, journal, behind, state) == ("0", "3", "3", ["paused", "-"]), status.stdout
    assert 1.5 <= float(lag) < 60.0
    assert rows["1"] == ["1", "1", "0", "0.0", "running", "-"], status.stdout
    one = table_rows(
        (await cos_cli(port, "readside", "status", "--id=rs-lag", "--shardNumber=0")).stdout
    )
    assert list(one) == ["0"] and one["0"][:3] == ["0", "3", "3"]

    await cos_cli(port, "readside", "resume", "--id", "rs-lag")
    await wait_until(lambda: _is(stored_offset(db, "rs-lag", 0), 3), what="shard 0 caught up")
    caught_up = table_rows((await cos_cli(port, "readside", "status", "--id", "rs-lag")).stdout)
    assert caught_up["0"] == ["3", "3", "0", "0.0", "running", "-"]


async def test_a_stopped_read_side_shows_its_last_error_and_when(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    reader = start_reader("rs-stop", FailurePolicy.STOP)
    cos = await start_with(start_cos, reader)
    port = cos.settings.server.port
    (entity,) = entities_in(1, 1, "s")
    await cos.stub.ProcessCommand(request(entity, add=[1]))
    await cos.stub.ProcessCommand(request(entity, add=[1], poison=True))
    await cos.stub.ProcessCommand(request(entity, add=[1]))
    stopped_query = (
        "SELECT stopped_reason FROM cos_read_side_offsets WHERE read_side_id = 'rs-stop'"
        " AND shard = 1"
    )
    await wait_until(lambda: _has_value(db.fetchval(stopped_query)), what="the stop")

    status = await cos_cli(port, "readside", "status", "--id", "rs-stop")
    offset, journal, behind, lag, state, day, time = table_rows(status.stdout)["1"]
    assert (offset, journal, behind, state) == ("1", "3", "2", "stopped"), status.stdout
    assert 0.0 < float(lag) < 60.0
    failed_at = datetime.strptime(f"{day} {time}", "%Y-%m-%d %H:%M:%SZ").replace(
        tzinfo=timezone.utc
    )
    assert abs(datetime.now(timezone.utc) - failed_at) < timedelta(seconds=60)
    why = f"stopped at position 2 ({entity!r} rev 2): "
    assert f"shard 1 {why}" in status.stdout, status.stdout
    assert "last error at" not in status.stdout.split("shard 1 stopped")[1]  # said once
    row = await db.fetchrow(
        "SELECT stopped_reason, last_error, last_error_at FROM cos_read_side_offsets"
        " WHERE read_side_id = 'rs-stop' AND shard = 1"
    )
    assert row["last_error"] == row["stopped_reason"]
    assert row["last_error"].startswith(f"position 2 ({entity!r} rev 2): ")
    assert row["last_error_at"] is not None

    # Healed and resumed, delivery recovers; the last error stays, with its time.
    reader.heal()
    await cos_cli(port, "readside", "resume", "--id", "rs-stop")
    await wait_until(lambda: _is(stored_offset(db, "rs-stop", 1), 3), what="recovery")
    after = await cos_cli(port, "readside", "status", "--id", "rs-stop")
    assert table_rows(after.stdout)["1"] == ["3", "3", "0", "0.0", "running", day, time]
    note = f"shard 1 last error at {day} {time}: position 2 ({entity!r} rev 2): "
    assert note in after.stdout, after.stdout
    assert "stopped" not in after.stdout


async def test_cluster_health_shows_the_host_its_shards_and_its_heartbeat(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos(num_shards=4)
    await cos.stub.ProcessCommand(request("held", add=[1]))
    (host_id,) = cos.runtime.hosts
    # A host of this runtime that has a heartbeat row but owns no shard (it is joining,
    # or it is gone), 42 s old by the database's clock, and one of another runtime.
    idle = host_prefix(cos.settings.cluster.cluster_name) + "idle"
    await db.execute(
        "INSERT INTO cos_hosts (host_id, address, heartbeat_at) VALUES"
        " ($1, '10.9.9.9:9000', now() - interval '42 seconds'),"
        " ('elsewhere-host-x', '10.8.8.8:9000', now())",
        idle,
    )
    await wait_until(
        lambda: _has_value(db.fetchval("SELECT 1 FROM cos_hosts WHERE host_id = $1", host_id)),
        what="the host's heartbeat",
    )

    health = await cos_cli(cos.settings.server.port, "cluster", "health")
    assert "2 hosts, 4 shards" in health.stdout, health.stdout
    rows = table_rows(health.stdout)
    assert set(rows) == {host_id, idle}, health.stdout
    address, count, numbers, active, age, *at = rows[host_id]
    assert at[:2] == ["s", "ago"] and len(at) == 4, health.stdout
    assert (address, count, numbers, active) == (
        f"127.0.0.1:{cos.settings.server.port}",
        "4",
        "0-3",
        "1",
    )
    assert 0.0 <= float(age) < 5.0
    address, count, numbers, active, age, *_ = rows[idle]
    assert (address, count, numbers, active) == ("10.9.9.9:9000", "0", "-", "0")
    assert 42.0 <= float(age) < 50.0
    shards = await cos_cli(cos.settings.server.port, "cluster", "shards")
    assert "4 shards on 1 hosts" in shards.stdout, shards.stdout


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _has_value(value: Awaitable[object]) -> bool:
    return await value is not None
