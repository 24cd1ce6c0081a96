"""Subprocesses for the benchmark: start with a log file, stop with the whole tree, meter CPU.

``ServerProcess`` starts one server in its own session with its output in a log file, and
stops it with SIGTERM, then SIGKILL for the process and for any descendant left behind (the
runtime starts Ray, whose processes must not outlive the run).

``TreeCpuMeter`` sums the user + system CPU time of a process and all its descendants over a
window. A thread samples the tree a few times a second, so processes that start during the
window are counted from zero and processes that end during it keep their last sample.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_ProcessKey = tuple[int, float]  # pid and create time: a pid alone can be reused


class StartupError(Exception):
    """A server did not become ready; the message ends with the tail of its log."""


class ServerProcess:
    """One server subprocess, its log file, and a clean stop of everything it started."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._argv = argv
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id; only after ``start``."""
        assert self._popen is not None, "not started"
        return self._popen.pid

    def start(self) -> None:
        """Starts the server in a session of its own, so a Ctrl-C reaches only the bench."""
        with self.log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        """The exit code once the server has ended, else None."""
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> StartupError:
        """A StartupError naming the server and carrying the tail of its log."""
        return StartupError(f"{self.name} {what}; log {self.log_path}:\n{self.log_tail()}")

    def wait_for_output(self, marker: str, timeout: float) -> None:
        """Waits until the log holds ``marker``; raises StartupError on exit or timeout."""
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_text(errors="replace"):
            if self.exit_code() is not None:
                raise self.failure(f"exited with code {self.exit_code()} before ready")
            if time.monotonic() > deadline:
                raise self.failure(f"printed no {marker!r} within {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0, also: Iterable[psutil.Process] = ()) -> list[str]:
        """SIGTERM, wait, SIGKILL if needed; then kills descendants left behind.

        ``also`` adds processes seen earlier (e.g. by a ``TreeCpuMeter``) whose parent may
        already be gone. Returns a note for each leftover that had to be killed.
        """
        if self._popen is None:
            return []
        tree: dict[_ProcessKey, psutil.Process] = {}
        for process in (*process_tree(self._popen.pid)[1:], *also):
            key = _key(process)
            if key is not None:
                tree[key] = process
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        # Children usually follow their parent within a moment; give them that, then kill.
        _, alive = psutil.wait_procs(list(tree.values()), timeout=5)
        notes = []
        for process in alive:
            try:
                notes.append(f"killed leftover {process.pid} {process.name()}")
                process.kill()
            except psutil.Error:
                continue
        psutil.wait_procs(alive, timeout=5)
        return notes


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds (user + system) used inside a window, in total and by process label."""

    seconds: float = math.nan
    by_label: dict[str, float] = field(default_factory=dict)
    processes: int = 0

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        """The labels that used the most, largest first."""
        return sorted(self.by_label.items(), key=lambda item: -item[1])[:count]


class TreeCpuMeter:
    """CPU used by a process tree between ``mark_start`` and ``mark_end``.

    With ``descendants=False`` it meters the root process alone (the bench's own client).
    """

    def __init__(self, root_pid: int, descendants: bool = True, interval: float = 0.2) -> None:
        self._root_pid = root_pid
        self._descendants = descendants
        self._interval = interval
        self._lock = threading.Lock()
        self._seen: dict[_ProcessKey, psutil.Process] = {}
        self._labels: dict[_ProcessKey, str] = {}
        self._last: dict[_ProcessKey, float] = {}
        self._baseline: dict[_ProcessKey, float] | None = None
        self.window = CpuUse()
        """What was used inside the window; set by ``mark_end``."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)

    def start(self) -> None:
        """Starts sampling in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stops sampling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mark_start(self) -> None:
        """Opens the window: what each process has used so far does not count."""
        with self._lock:
            self._sample()
            self._baseline = dict(self._last)

    def mark_end(self) -> None:
        """Closes the window; ``window`` then holds what was used inside it."""
        with self._lock:
            self._sample()
            baseline = self._baseline or {}
            used = {k: v - baseline.get(k, 0.0) for k, v in self._last.items()}
            by_label: dict[str, float] = {}
            for key, seconds in used.items():
                by_label[self._labels[key]] = by_label.get(self._labels[key], 0.0) + seconds
            busy = sum(1 for seconds in used.values() if seconds > 0)
            self.window = CpuUse(sum(used.values()), by_label, busy)

    def seen(self) -> list[psutil.Process]:
        """Every process of the tree seen so far, alive or not."""
        with self._lock:
            return list(self._seen.values())

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                self._sample()

    def _sample(self) -> None:
        for process in process_tree(self._root_pid, self._descendants):
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
                    # Read each time: a Ray worker renames itself once it hosts an actor.
                    self._labels[key] = process_label(process)
            except psutil.Error:
                continue  # gone since the walk: its last sample stands
            self._seen.setdefault(key, process)
            # Only the process's own time: children_* would count reaped children twice.
            self._last[key] = times.user + times.system


class MachineCpuMeter:
    """How many cores the whole machine kept busy between ``mark_start`` and ``mark_end``.

    Shows whether the box, rather than the target, set the pace, and whether something
    outside the benchmark was using it.
    """

    def __init__(self) -> None:
        self._start: tuple[float, float] | None = None
        self.busy_cores = math.nan
        """Average cores busy over the window; set by ``mark_end``."""

    def mark_start(self) -> None:
        """Opens the window."""
        self._start = (time.monotonic(), _busy_seconds())

    def mark_end(self) -> None:
        """Closes the window."""
        if self._start is not None:
            began, busy = self._start
            self.busy_cores = (_busy_seconds() - busy) / (time.monotonic() - began)


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    # guest time is already inside user time on Linux; idle and iowait are not busy.
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(times, name, 0.0) for name in busy))


def process_label(process: psutil.Process) -> str:
    """A short name: Ray's worker title, a Python program and its subcommand, or the binary."""
    argv: list[str] = process.cmdline()
    if not argv:
        return str(process.name())
    if argv[0].startswith("ray::"):
        # Ray titles its workers in argv; comm would cut "ray::Coordinator" to 15 characters.
        return argv[0].split()[0]
    words = argv[1:] if Path(argv[0]).name.startswith("python") else argv
    words = [w for w in words if w != "-u"]
    if not words:
        return str(process.name())
    program = [Path(words[0]).name]
    for word in words[1:]:
        if word.startswith("-") or "/" in word:
            break
        program.append(word)
    return " ".join(program)


def process_tree(pid: int, descendants: bool = True) -> list[psutil.Process]:
    """The process and, unless told not to, all its descendants; empty once it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if descendants else [root]
    except psutil.Error:
        return []


def _key(process: psutil.Process) -> _ProcessKey | None:
    try:
        return (process.pid, process.create_time())
    except psutil.Error:
        return None
