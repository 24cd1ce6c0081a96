"""Processes of the tests: free ports, child processes with their output, the test and
example write handlers."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout


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
