"""Test read handler processes and helpers to watch what they received."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cos.readside._config import FailurePolicy, ReadSideConfig
from tests.support.processes import ROOT, Process, free_port
from tests.support.runtimes import RunningRuntime, StartRuntime
from tests.support.serve import ADMIN_TOKEN


@dataclass
class Reader:
    """A running test read handler and the log of what it saw."""

    process: Process
    port: int
    log: Path
    read_side_id: str
    policy: FailurePolicy | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, **overrides: Any) -> ReadSideConfig:
        values: dict[str, Any] = {
            "read_side_id": self.read_side_id,
            "host": "127.0.0.1",
            "port": self.port,
            "timeout_ms": 5000,
            "failure_policy": self.policy,
        }
        values.update(overrides)
        return ReadSideConfig(**values)

    def records(self, kind: str = "delivered") -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["kind"] == kind]

    def delivered(self) -> list[tuple[str, int]]:
        return [(r["entity_id"], r["revision"]) for r in self.records()]

    def heal(self) -> None:
        Path(str(self.log) + ".healed").touch()

    def restart(self) -> None:
        """Start the handler again on the same port, after ``process.stop()``."""
        self.process = _spawn(self.log, self.port, self.extra.get("fail_every", 0))


def _spawn(log: Path, port: int, fail_every: int) -> Process:
    args = [sys.executable, str(ROOT / "tests/handlers/reader.py"), "--log", str(log)]
    process = Process([*args, "--fail-every", str(fail_every), "--port", str(port)])
    process.wait_for(r"listening on [\d.]+:(\d+)", timeout=30)
    return process


@pytest.fixture
def start_reader(tmp_path: Path) -> Iterator[Callable[..., Reader]]:
    started: list[Reader] = []

    def start(
        read_side_id: str, policy: FailurePolicy | None = None, fail_every: int = 0
    ) -> Reader:
        log = tmp_path / f"{read_side_id}.jsonl"
        port = free_port()
        process = _spawn(log, port, fail_every)
        reader = Reader(process, port, log, read_side_id, policy, {"fail_every": fail_every})
        started.append(reader)
        return reader

    yield start
    for reader in started:
        reader.process.stop()


def cli(port: int, *args: str, camel: bool = False) -> subprocess.CompletedProcess[str]:
    where = (
        ["--cosHost", "127.0.0.1", "--cosPort", str(port)]
        if camel
        else ["--cos-host", "127.0.0.1", "--cos-port", str(port)]
    )
    command = [sys.executable, "-m", "cli.admin", "readside", *args, *where]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin", "COS_ADMIN_TOKEN": ADMIN_TOKEN},
    )


async def start_with(start_cos: StartRuntime, reader: Reader) -> RunningRuntime:
    """A runtime of two shards whose one read side is ``reader``, retrying fast."""
    return await start_cos(
        num_shards=2,
        read_side_enabled=True,
        read_sides=(reader.config(),),
        read_side_retry_min_seconds=0.05,
        read_side_retry_max_seconds=0.2,
    )
