"""Every ``cos-cli readside`` subcommand against a running runtime."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import asyncpg

from tests.integration.commands import request
from tests.integration.conftest import StartRuntime
from tests.integration.readsides import Reader, cli, start_reader, wait_until

__all__ = ["start_reader"]


async def test_every_readside_subcommand(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    reader = start_reader("rs-cli")
    cos = await start_cos(
        num_shards=2,
        read_side_enabled=True,
        read_sides=(reader.config(),),
        read_side_retry_min_seconds=0.05,
        read_side_retry_max_seconds=0.2,
    )
    port = cos.settings.port
    for i in range(4):
        await cos.stub.ProcessCommand(request(f"c{i}", add=[1]))
    await wait_until(lambda: len(reader.delivered()) == 4)
    rows = await db.fetch("SELECT shard, max(position) AS p FROM cos_journal GROUP BY shard")
    last = {r["shard"]: r["p"] for r in rows}
    await wait_until(lambda: _offsets_stored(db, last))

    table = cli(port, "offset", "--id", "rs-cli")
    assert table.returncode == 0, table.stderr
    rows_printed = [line.replace("│", " ").split() for line in table.stdout.splitlines()]
    for shard, position in last.items():
        assert [str(shard), str(position)] in rows_printed, table.stdout
    one = cli(port, "offset", "--id", "rs-cli", "--shard-number", "1", camel=True)
    assert one.returncode == 0, one.stderr
    body = [line.replace("│", " ").split() for line in one.stdout.splitlines()]
    assert [str(1), str(last.get(1, 0))] in body and [str(0), str(last.get(0, 0))] not in body

    paused = cli(port, "pause", "--id", "rs-cli", "--shard-number", "0")
    assert (paused.returncode, paused.stdout.strip()) == (0, "paused read side rs-cli in shard 0")
    assert await db.fetchval(
        "SELECT paused FROM cos_read_side_offsets WHERE read_side_id = 'rs-cli' AND shard = 0"
    )
    resumed = cli(port, "resume", "--id", "rs-cli")
    assert resumed.stdout.strip() == "resumed read side rs-cli in all shards"
    assert not await db.fetchval("SELECT bool_or(paused) FROM cos_read_side_offsets")

    restarted = cli(port, "restart", "--id", "rs-cli")
    assert restarted.returncode == 0, restarted.stderr
    await wait_until(lambda: len(reader.delivered()) == 8, what="redelivery after restart")

    skipped = cli(port, "skip", "--id", "rs-cli", "--shard-number", "1")
    assert skipped.stdout.strip() == "skipped the current event of read side rs-cli in shard 1"

    unknown = cli(port, "pause", "--id", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: NOT_FOUND: read side 'nope' is not configured")
    out_of_range = cli(port, "offset", "--id", "rs-cli", "--shard-number", "9")
    assert out_of_range.returncode == 1
    assert out_of_range.stderr.startswith("error: INVALID_ARGUMENT: shard number 9 is out of range")


async def _offsets_stored(db: asyncpg.Connection, last: dict[int, int]) -> bool:
    rows = await db.fetch("SELECT shard, position FROM cos_read_side_offsets")
    return {r["shard"]: r["position"] for r in rows if r["shard"] in last} == last


def test_cli_help_and_missing_id() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.admin", "readside", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for sub in ("offset", "pause", "resume", "skip", "restart"):
        assert sub in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "cli.admin", "readside", "pause"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "--id" in missing.stderr
