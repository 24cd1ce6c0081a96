"""Helpers shared by the test suites: free ports, subprocesses, database discovery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from chief_of_state.v1 import service_pb2_grpc
from cos.postgres import DatabaseTarget, EmbeddedPostgres
from cos.settings import CosSettings, settings_from

ROOT = Path(__file__).resolve().parent.parent


# Ports a test listens on come from below the kernel's ephemeral range and above Ray's
# worker ports (10002-19999 by default). A port from bind(0) is an ephemeral one: between
# the test choosing it and the server binding it, any outgoing connection (Ray makes many)
# or any other bind(0) may take it, and the server then finds its port in use.
_FIRST_PORT = 20_000
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A port nothing listens on and no connection will take meanwhile, never the same
    twice in a session."""
    last = _ephemeral_start()
    for _ in range(1000):
        port = random.randrange(_FIRST_PORT, last) if last > _FIRST_PORT else 0
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        _given.add(port)
        return port
    raise AssertionError("no free port found below the ephemeral range")


class Process:
    """A child process whose output is collected; ``wait_for`` blocks on a line."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        *,
        stdin: bool = False,
    ) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(os.environ) if env is None else env,  # a given env is the whole of it
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin else None,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if self.proc.poll() is not None and seen == len(self.lines):
                    raise AssertionError(f"process exited ({self.proc.returncode}):\n{self.output}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r}:\n{self.output}")
                self._cond.wait(min(left, 0.5))

    def send(self, line: str) -> None:
        """Write ``line`` to the child's stdin (started with ``stdin=True``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait, then SIGKILL the whole process group if needed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


COS = [sys.executable, "-m", "cli.main"]
# The operator token of every runtime the tests start (COS_ADMIN_TOKEN), and how a
# test's gRPC call or cos-cli run presents it.
ADMIN_TOKEN = "test-operator-token"
OPERATOR_METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


def serve_env(handler_port: int, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COS_", "RAY_ADDRESS"))}
    env.update(
        COS_WRITE_SIDE_HOST="127.0.0.1",
        COS_WRITE_SIDE_PORT=str(handler_port),
        COS_PORT=str(port),
        COS_ADDRESS="127.0.0.1",
        COS_NUM_SHARDS="4",
        COS_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    env.update(extra)
    return env


def db_env(target: DatabaseTarget) -> dict[str, str]:
    return {
        "COS_DB_HOST": target.host,
        "COS_DB_PORT": str(target.port),
        "COS_DB_USER": target.user,
        "COS_DB_PASSWORD": target.password,
        "COS_DB_NAME": target.database,
        "COS_DB_SCHEMA": target.schema,
    }


def start_write_handler(*extra: str) -> tuple[Process, int]:
    script = str(ROOT / "tests/handlers/writer.py")
    process = Process([sys.executable, script, "--port", "0", *extra])
    port = int(process.wait_for(r"listening on [\d.]+:(\d+)", timeout=30).group(1))
    return process, port


# The bank example's write handler in each language (examples/bank, examples/bank-node):
# the same command line, the same behaviour; tests run against both.
BANK_HANDLERS = {
    "python": [sys.executable, str(ROOT / "examples/bank/handler.py")],
    "node": ["node", str(ROOT / "examples/bank-node/handler.js")],
}


def bank_handler_args(language: str, *extra: str) -> list[str]:
    """The command line of the bank handler in ``language``. The Node one must run
    wherever the tests run: no node, or no ``npm ci`` yet, fails here with the fix."""
    if language == "node":
        assert shutil.which("node"), "node is not on PATH: run scripts/install.sh as root"
        # npm writes this file last, so a half-done install still counts as missing.
        assert (ROOT / "examples/bank-node/node_modules/.package-lock.json").is_file(), (
            "examples/bank-node is not installed: run scripts/install.sh (npm ci)"
        )
    return [*BANK_HANDLERS[language], *extra]


async def _reachable(target: DatabaseTarget) -> bool:
    try:
        conn = await asyncpg.connect(**{**target.connect_kwargs(), "timeout": 3})
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        return False
    await conn.close()
    return True


def find_database() -> tuple[DatabaseTarget, EmbeddedPostgres | None]:
    """COS_TEST_DATABASE_URL, else 127.0.0.1:5432 (postgres), else an embedded server."""
    url = os.environ.get("COS_TEST_DATABASE_URL")
    if url:
        return DatabaseTarget.from_url(url), None
    local = DatabaseTarget("127.0.0.1", 5432, "postgres", "postgres", "public")
    if asyncio.run(_reachable(local)):
        return local, None
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="cos-pg-")))
    return DatabaseTarget.from_url(embedded.start()), embedded


def new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


async def drop_schema(target: DatabaseTarget) -> None:
    conn = await asyncpg.connect(**target.connect_kwargs())
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
    finally:
        await conn.close()


def build_image(tag: str) -> str:
    """Build the runtime's image with scripts/build-image.sh (podman); its name."""
    built = subprocess.run(
        [str(ROOT / "scripts/build-image.sh"), tag], capture_output=True, text=True, timeout=1200
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return f"localhost/cos-ray:{tag}"


def refused_start(env: dict[str, str], timeout: float = 180) -> str:
    """Run ``cos serve``, which must refuse to start (within ``timeout`` seconds); returns
    its one ``cos:`` line (see :func:`one_line_failure`)."""
    result = subprocess.run(
        [*COS, "serve"], env=env, capture_output=True, text=True, timeout=timeout
    )
    return one_line_failure(result)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, no traceback, and exactly one ``cos:`` line, the last one; returns it."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("cos: ")] == lines[-1:], result.stderr
    return lines[-1]


class Serve:
    """A running ``cos serve`` with a sync client."""

    def __init__(self, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.process = Process([*COS, "serve"], env=env, cwd=cwd)
        self.process.wait_for(r"cos serve ready", timeout=180)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{env['COS_PORT']}")
        self.stub = service_pb2_grpc.ChiefOfStateServiceStub(self.channel)

    def stop(self) -> int:
        self.channel.close()
        return self.process.stop()


# Settings no environment variable sets, by the part that holds them.
_NOT_FROM_ENVIRONMENT = {
    "read_sides": "read_side.read_sides",
    "telemetry": "telemetry.otel",
    "descriptor_sets": "http.descriptor_sets",
}
_NOT_COS_PREFIXED = {"log_level": "LOG_LEVEL", "log_style": "LOG_STYLE", "pod_ip": "POD_IP"}


def cos_settings(**values: Any) -> CosSettings:
    """Settings for a test's runtime, each named as its environment variable is without
    ``COS_``, in lower case (``num_shards=4`` is ``COS_NUM_SHARDS=4``); ``read_sides``,
    ``telemetry`` and ``descriptor_sets`` set what no variable does. Validated as the
    environment is (``SettingsError`` naming the variable)."""
    named = {}
    for name, value in values.items():
        variable = _NOT_FROM_ENVIRONMENT.get(name) or _NOT_COS_PREFIXED.get(name)
        named[variable or f"COS_{name.upper()}"] = value
    return settings_from(named)
