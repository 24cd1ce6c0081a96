"""Log lines in one of Chief of State's three styles, the same in every process.

``LOG_STYLE`` picks the format (Chief of State's names):

- ``STANDARD``: ``2026-11-23T10:00:00.123Z INFO  cos.serve - cos serve ready ...``
- ``SIMPLE``: ``INFO  cos.serve - cos serve ready ...``
- ``JSON``: one JSON object per line, with Chief of State's field names
  (``timestamp``, ``level``, ``logger_name``, ``message``, ``service``, ...), and, when
  tracing is on, ``trace_id``/``span_id`` for a line written inside a traced operation
  (``cos.telemetry`` adds them).

The driver (``cos serve``) and the Ray actors (shard hosts, coordinator) each call
:func:`configure_logging` with the same :class:`LogSettings`. An actor on the driver's
machine writes to the driver's own stderr (:func:`share_stderr`), so every line reaches
where the operator looks without Ray's log monitor, a process per node that tails the
workers' files. What Ray still forwards (a ``cos serve`` whose stderr cannot be shared,
clusters started by other means), :func:`prepare_ray_log_forwarding` makes it print as it
is, without its ``(Node pid=...)`` prefix and colour codes, so every line on the
driver's stderr has one format.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import io
import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated, Any

from pydantic import BeforeValidator, Field
from pythonjsonlogger.json import JsonFormatter

from cos.config import Part


class LogStyle(str, enum.Enum):
    """The ``LOG_STYLE`` values."""

    STANDARD = "STANDARD"
    SIMPLE = "SIMPLE"
    JSON = "JSON"


def _log_level(value: object) -> object:
    # Chief of State's names (logback: WARN, TRACE) next to Python's.
    aliases = {"WARN": "WARNING", "TRACE": "DEBUG", "FATAL": "CRITICAL"}
    if isinstance(value, str):
        level = aliases.get(value.strip().upper(), value.strip().upper())
        if level in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            return level
    raise ValueError("must be one of DEBUG, INFO, WARN, ERROR")


LogLevel = Annotated[str, BeforeValidator(_log_level)]
Style = Annotated[
    LogStyle, BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v)
]


class LogSettings(Part):
    """What every process of the runtime needs to log alike."""

    env_prefix = ""

    level: LogLevel = Field("INFO", alias="LOG_LEVEL", description="DEBUG, INFO, WARN or ERROR")
    style: Style = Field(
        LogStyle.STANDARD, alias="LOG_STYLE", description="log format: STANDARD, SIMPLE or JSON"
    )
    service: str = Field(
        "chiefofstate",
        min_length=1,
        alias="COS_SERVICE_NAME",
        description="names the service in logs and traces",
    )


def _utc_time(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)


class _JsonLineFormatter(JsonFormatter):
    """Chief of State's logstash field names; an exception goes in ``stack_trace``."""

    def __init__(self, service: str) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(threadName)s",
            rename_fields={
                "levelname": "level",
                "name": "logger_name",
                "threadName": "thread_name",
                "exc_info": "stack_trace",
            },
            static_fields={"service": service},
            timestamp="timestamp",
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)

    # dict[str, Any]: python-json-logger's signature.
    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["timestamp"] = self.formatTime(record)


def formatter_for(settings: LogSettings) -> logging.Formatter:
    """The formatter of ``settings.style``."""
    if settings.style is LogStyle.JSON:
        return _JsonLineFormatter(settings.service)
    if settings.style is LogStyle.SIMPLE:
        return logging.Formatter("%(levelname)-5s %(name)s - %(message)s")
    return _UtcFormatter("%(asctime)s %(levelname)-5s %(name)s - %(message)s")


class RepeatFilter(logging.Filter):
    """Lets the first of identical warnings through, then holds back the same message
    for ``window`` seconds; the next one let through says how many were held back.

    Identical means the same logger and the same formatted message: a client that
    sends the same bad request in a loop cannot flood the log, while different
    failures still each get their line. Records below WARNING always pass.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        now = self._clock()
        since, held = self._seen.get(key, (-self._window, 0))
        if now - since < self._window:
            self._seen[key] = (since, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{key[1]} ({held} more like this were held back)"
            record.args = None
        if len(self._seen) > 10_000:  # many distinct messages: start afresh
            self._seen.clear()
        return True


class PublicNames(logging.Filter):
    """Names a record's logger as operators know it: by the public path of its module
    (``cos.postgres.embedded`` for ``cos.postgres._embedded``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "._" in record.name:
            record.name = record.name.replace("._", ".")
        return True


def configure_logging(settings: LogSettings, stream: IO[str] | io.TextIOBase | None = None) -> None:
    """Send every log record of this process to ``stream`` (stderr) in the chosen style,
    identical warnings rate-limited (:class:`RepeatFilter`), loggers by their public names
    (:class:`PublicNames`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter_for(settings))
    handler.addFilter(PublicNames())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    # Ray gives its logger a handler of its own at import: its lines get ours instead.
    ray_logger = logging.getLogger("ray")
    for old in list(ray_logger.handlers):
        ray_logger.removeHandler(old)
    ray_logger.propagate = True
    # Ray's own INFO lines ("Started a local Ray instance.") tell an operator nothing.
    ray_logger.setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)
    # Chatty at INFO without saying anything an operator acts on.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def process_start(pid: int) -> int | None:
    """When process ``pid`` of this machine started (clock ticks since boot, from
    ``/proc``): with its pid, it names one process, never a later one given the same pid;
    None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])  # starttime, the 22nd field; the 3rd is the first after ")"


def append_stderr() -> None:
    """Make this process's stderr append-only when it is a file (``cos serve > log``).
    Another process that opens it through ``/proc`` (:func:`share_stderr`) gets a file
    description of its own, with its own offset: without appending, each would write over
    the other's lines. The shell and the processes that share this description append
    from now on too, which is what a log wants."""
    if stat.S_ISREG(os.fstat(2).st_mode):
        flags = fcntl.fcntl(2, fcntl.F_GETFL)
        fcntl.fcntl(2, fcntl.F_SETFL, flags | os.O_APPEND)


def can_share_stderr(pid: int) -> bool:
    """Whether another process may open the stderr of process ``pid`` (a terminal, a pipe
    or a file; not a socket, as systemd gives a service)."""
    try:
        os.close(os.open(f"/proc/{pid}/fd/2", os.O_WRONLY | os.O_APPEND))
    except OSError:
        return False
    return True


def share_stderr(pid: int, started: int | None = None) -> bool:
    """Make this process's stderr that of process ``pid`` of this machine (which started
    at ``started``, when given, see :func:`process_start`): what this process and its
    children write there goes where that process's lines go. False, and stderr left as it
    was, when that process is gone or its stderr cannot be opened."""
    if started is not None and process_start(pid) != started:
        return False
    try:
        shared = os.open(f"/proc/{pid}/fd/2", os.O_WRONLY | os.O_APPEND)
    except OSError:
        return False
    sys.stderr.flush()
    os.dup2(shared, 2)
    os.close(shared)
    return True


def _notes() -> Path:
    """Where each ``cos serve`` notes which process's stderr the runtime's processes on
    its Ray node write to: one file per node, in a folder of this user's only."""
    return Path(tempfile.gettempdir()) / f"cos-stderr-{os.getuid()}"


def note_stderr(node: str, pid: int | None = None) -> None:
    """Note process ``pid`` (this one by default) as the one whose stderr the runtime's
    processes on Ray node ``node`` write to (:class:`NodeStderr`). Nothing is noted when
    the folder is not this user's alone: those processes then write to their own."""
    pid = os.getpid() if pid is None else pid
    folder = _notes()
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    found = folder.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        return
    note = folder / node
    fresh = note.with_name(f".{node}.{os.getpid()}")
    fresh.write_text(f"{pid} {process_start(pid)}\n")
    fresh.replace(note)  # whole or not at all, for a reader


def _noted(node: str) -> tuple[int, int] | None:
    try:
        pid, started = (_notes() / node).read_text().split()
        return int(pid), int(started)
    except (OSError, ValueError):
        return None


def _write_to_stderr_of(pid: int, started: int, text: str) -> bool:
    """Write ``text`` to the stderr of process ``pid`` that started at ``started``;
    False when there is no such process (any more) or its stderr cannot be opened."""
    if process_start(pid) != started:
        return False
    try:
        shared = os.open(f"/proc/{pid}/fd/2", os.O_WRONLY | os.O_APPEND)
    except OSError:
        return False
    try:
        os.write(shared, text.encode())
    except OSError:
        return False
    finally:
        os.close(shared)
    return True


class NodeStderr(io.TextIOBase):
    """A text stream writing to the stderr of the process noted for Ray node ``node``
    (:func:`note_stderr`: the ``cos serve`` of that node) while it runs, and to this
    process's own stderr otherwise. The note is read for each line, so the lines follow a
    ``cos serve`` started after this stream.

    Each write opens that stderr and closes it again: a long-lived process (the
    coordinator) holding it open would keep a pipe read by the other process's parent
    (``cos serve | tee``, a test) from ever ending.
    """

    def __init__(self, node: str) -> None:
        super().__init__()
        self._node = node

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        target = _noted(self._node)
        if target is None or not _write_to_stderr_of(*target, text):
            sys.stderr.write(text)
        return len(text)


def prepare_ray_log_forwarding() -> None:
    """Make the driver print what Ray forwards from the actors line for line.

    Ray reads these when it is imported, so this runs before the first ``import ray``
    of the driver. Each variable is left alone if the operator set it.
    """
    os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")  # no "(Node pid=..)"
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # no "[repeated 2x across cluster]"
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
