"""Every ``cos-cli readside`` subcommand against a running runtime."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable

import asyncpg

from cos.readside._config import FailurePolicy
from cos.sharding import shard_of
from tests.support.commands import request
from tests.support.readsides import Reader, cli, start_reader, start_with
from tests.support.runtimes import StartRuntime
from tests.support.serve import ADMIN_TOKEN
from tests.support.waiting import wait_until

__all__ = ["start_reader"]


async def test_every_readside_subcommand(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    reader = start_reader("rs-cli")
    cos = await start_with(start_cos, reader)
    port = cos.settings.server.port
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


def cos_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``cos-cli`` with arguments exactly as given (Chief of State CLI spellings)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin", "COS_ADMIN_TOKEN": ADMIN_TOKEN},
    )


async def test_chief_of_state_cli_spellings(
    start_cos: StartRuntime, start_reader: Callable[..., Reader], db: asyncpg.Connection
) -> None:
    reader = start_reader("rs-cos", FailurePolicy.STOP)
    cos = await start_with(start_cos, reader)
    port = str(cos.settings.server.port)
    entity = next(e for e in (f"k{i}" for i in range(100)) if shard_of(e, 2) == 1)
    await cos.stub.ProcessCommand(request(entity, add=[1]))
    await cos.stub.ProcessCommand(request(entity, add=[1], poison=True))
    await cos.stub.ProcessCommand(request(entity, add=[1]))
    await wait_until(lambda: any(r["revision"] == 2 for r in reader.records("attempt")))

    async def offset_of_shard_1() -> int:
        return int(
            await db.fetchval(
                "SELECT position FROM cos_read_side_offsets"
                " WHERE read_side_id = 'rs-cos' AND shard = 1"
            )
        )

    await wait_until(lambda: _equals(offset_of_shard_1(), 1))
    # As the Chief of State CLI is called: flags before the command, skipOffset, and
    # --shard-number -1 for every shard.
    skipped = await asyncio.to_thread(
        cos_cli,
        "--cosHost",
        "127.0.0.1",
        "--cosPort",
        port,
        "readside",
        "--id",
        "rs-cos",
        "--shard-number",
        "-1",
        "skipOffset",
    )
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.strip() == "skipped the current event of read side rs-cos in all shards"
    await wait_until(lambda: (entity, 3) in reader.delivered(), what="the event after the skip")
    assert reader.delivered() == [(entity, 1), (entity, 3)]
    # Flags after the command, camelCase host/port, a negative shard for all shards.
    table = await asyncio.to_thread(
        cos_cli,
        "readside",
        "offset",
        "--id=rs-cos",
        "--shard-number=-1",
        "--cosHost=127.0.0.1",
        f"--cosPort={port}",
    )
    assert table.returncode == 0, table.stderr
    rows = [line.replace("│", " ").split() for line in table.stdout.splitlines()]
    assert ["0", "0"] in rows and ["1", "3"] in rows, table.stdout
    one = await asyncio.to_thread(
        cos_cli, "readside", "--shard-number", "1", "offset", "--id", "rs-cos", "--cosPort", port
    )
    assert one.returncode == 0, one.stderr
    body = [line.replace("│", " ").split() for line in one.stdout.splitlines()]
    assert ["1", "3"] in body and ["0", "0"] not in body, one.stdout


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
