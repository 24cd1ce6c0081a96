"""Log lines in Chief of State's three styles."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from cos.logs import (
    LogSettings,
    LogStyle,
    NodeStderr,
    RepeatFilter,
    configure_logging,
    note_stderr,
    process_start,
)
from cos.telemetry._setup import add_trace_ids_to_logs


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def emit(style: LogStyle) -> list[str]:
    stream = io.StringIO()
    configure_logging(LogSettings(level="INFO", style=style, service="accounts"), stream)
    logging.getLogger("cos.test").info("ready on %s", "127.0.0.1:9000")
    logging.getLogger("cos.test").debug("not at INFO")
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("cos.test").exception("it failed")
    return stream.getvalue().splitlines()


def test_json_is_one_object_per_line_with_chief_of_states_fields() -> None:
    lines = emit(LogStyle.JSON)
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "ready on 127.0.0.1:9000"
    assert (first["level"], first["logger_name"], first["service"]) == (
        "INFO",
        "cos.test",
        "accounts",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["timestamp"])
    assert second["level"] == "ERROR"
    assert "ValueError: broken" in second["stack_trace"]


def test_json_lines_written_inside_a_span_carry_its_trace_and_span_ids() -> None:
    stream = io.StringIO()
    configure_logging(LogSettings(level="INFO", style=LogStyle.JSON, service="accounts"), stream)
    add_trace_ids_to_logs()  # as a node does when tracing is on
    tracer = TracerProvider().get_tracer("test")
    logging.getLogger("cos.test").info("outside")
    with tracer.start_as_current_span("command") as span:
        logging.getLogger("cos.test").info("inside")
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"


def test_standard_and_simple_are_plain_lines_without_colour() -> None:
    standard = emit(LogStyle.STANDARD)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  cos\.test - ready on 127\.0\.0\.1:9000",
        standard[0],
    )
    assert emit(LogStyle.SIMPLE)[0] == "INFO  cos.test - ready on 127.0.0.1:9000"
    assert not any("\x1b[" in line for line in standard)


def test_identical_warnings_are_held_back_then_counted() -> None:
    now = [0.0]
    repeat = RepeatFilter(window=10.0, clock=lambda: now[0])

    def warn(message: str, *args: object) -> bool:
        record = logging.LogRecord("cos.x", logging.WARNING, __file__, 1, message, args, None)
        passed = repeat.filter(record)
        if passed:
            let_through.append(record.getMessage())
        return passed

    let_through: list[str] = []
    assert warn("bad body from %s", "h:1")
    assert not any(warn("bad body from %s", "h:1") for _ in range(500))
    assert warn("bad body from %s", "h:2")  # another message passes
    now[0] = 10.5
    assert warn("bad body from %s", "h:1")
    assert let_through == [
        "bad body from h:1",
        "bad body from h:2",
        "bad body from h:1 (500 more like this were held back)",
    ]
    info = logging.LogRecord("cos.x", logging.INFO, __file__, 1, "same", None, None)
    assert all(repeat.filter(info) for _ in range(3))  # only warnings and worse are held


def _sleeper() -> subprocess.Popen[str]:
    """A process whose stderr is a pipe this test reads."""
    code = "import sys, time; sys.stdin.read()"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _share(pid: int, started: int | None) -> str:
    """A second process shares the stderr of ``pid`` and writes a line there."""
    code = (
        "import sys; from cos.logs import share_stderr;"
        f" shared = share_stderr({pid}, {started});"
        " print('shared' if shared else 'not shared', file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return done.stderr


def test_a_process_writes_its_lines_to_another_ones_stderr() -> None:
    sleeper = _sleeper()
    try:
        assert _share(sleeper.pid, process_start(sleeper.pid)) == ""  # none left here
    finally:
        _, err = sleeper.communicate("", timeout=30)
    assert err == "shared\n"


def test_a_later_process_with_the_same_pid_is_not_written_to() -> None:
    sleeper = _sleeper()
    started = process_start(sleeper.pid)
    assert started is not None
    try:
        assert _share(sleeper.pid, started + 1) == "not shared\n"
    finally:
        _, err = sleeper.communicate("", timeout=30)
    assert err == ""
    assert process_start(sleeper.pid) is None  # gone


def test_a_stream_to_a_nodes_noted_process_keeps_nothing_open_and_outlives_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = f"test-{secrets.token_hex(6)}"
    stream = NodeStderr(node)
    stream.write("nothing noted\n")  # no cos serve noted for the node yet: here
    assert capsys.readouterr().err == "nothing noted\n"
    sleeper = _sleeper()
    note_stderr(node, sleeper.pid)  # noted after the stream was made: read for each line
    stream.write("first\n")
    # It holds no descriptor of the pipe: the sleeper's reader sees its end.
    _, err = sleeper.communicate("", timeout=30)
    assert err == "first\n"
    stream.write("second\n")  # the process is gone: here instead
    assert capsys.readouterr().err == "second\n"
    folder = Path(tempfile.gettempdir()) / f"cos-stderr-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700  # this user's alone
    (folder / node).unlink()


def test_lines_shared_into_a_log_file_are_not_written_over(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    code = (
        "import sys; from cos.logs import append_stderr; append_stderr();"
        " print('driver, first', file=sys.stderr, flush=True); sys.stdin.readline();"
        " print('driver, last', file=sys.stderr, flush=True)"
    )
    with log.open("w") as stderr:  # as `cos serve 2> serve.log` opens it: not appending
        driver = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            while "first" not in log.read_text():
                time.sleep(0.01)
            _share(driver.pid, process_start(driver.pid))  # the node's line
        finally:
            driver.communicate("\n", timeout=30)
    assert log.read_text().splitlines() == ["driver, first", "shared", "driver, last"]
