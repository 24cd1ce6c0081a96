"""``cos serve`` / ``cos migrate`` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chief_of_state.v1 import service_pb2
from cos.postgres import DatabaseTarget, pin_shard_count
from tests.support.commands import request, state_of
from tests.support.database import db_env
from tests.support.processes import free_port
from tests.support.readsides import Reader, cli, start_reader
from tests.support.serve import COS, Serve, one_line_failure, serve_env

__all__ = ["start_reader"]  # the fixture, for pytest


def test_bad_setting_stops_start_up_with_one_line_naming_it() -> None:
    env = serve_env(1, free_port(), COS_NUM_SHARDS="many")
    result = subprocess.run([*COS, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cos: COS_NUM_SHARDS:")
    assert "'many'" in lines[0]


def test_missing_write_side_host_is_named() -> None:
    env = serve_env(1, free_port())
    del env["COS_WRITE_SIDE_HOST"]
    result = subprocess.run([*COS, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "cos: COS_WRITE_SIDE_HOST: required but not set"


def test_bad_read_side_setting_names_the_read_side_and_setting() -> None:
    env = serve_env(1, free_port(), COS_READ_SIDE_ENABLED="true")
    env["COS_READ_SIDE_CONFIG__HOST__ledger"] = "handler"
    result = subprocess.run([*COS, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "cos: read side 'ledger': port is required"


async def test_another_shard_count_on_a_written_journal_is_refused(
    database: DatabaseTarget,
) -> None:
    await pin_shard_count(database, 16)
    env = serve_env(1, free_port(), **db_env(database))  # COS_NUM_SHARDS=4
    result = subprocess.run([*COS, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cos: the journal in schema {database.schema!r} was written with")
    assert "COS_NUM_SHARDS=16; this node has 4" in last


def test_restart_of_cos_serve_keeps_every_entity(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    env = serve_env(write_handler, free_port(), **db_env(database))
    first = Serve(env)
    serving.append(first)
    expected = {}
    for i in range(12):
        reply = first.stub.ProcessCommand(request(f"s-{i}", add=[i, 1]))
        expected[f"s-{i}"] = (reply.meta.revision_number, state_of(reply)["total"])
    assert first.stop() == 0, first.process.output
    serving.remove(first)

    second = Serve(env)
    serving.append(second)
    for entity_id, (revision, total) in expected.items():
        got = second.stub.GetState(service_pb2.GetStateRequest(entity_id=entity_id))
        assert (got.meta.revision_number, state_of(got)["total"]) == (revision, total)


def test_embedded_postgres_when_no_database_is_configured(
    tmp_path: Path, write_handler: int, serving: list[Serve]
) -> None:
    data = Path(tmp_path) / "pg"
    env = serve_env(write_handler, free_port(), COS_EMBEDDED_DB_DIR=str(data))
    migrated = subprocess.run(
        [*COS, "migrate"], env=env, capture_output=True, text=True, timeout=180
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout
    serve = Serve(env)
    serving.append(serve)
    assert "embedded PostgreSQL" in serve.process.output
    reply = serve.stub.ProcessCommand(request("emb-1", add=[2]))
    assert reply.meta.revision_number == 1
    assert (data / "PG_VERSION").exists()


def run_serve(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``cos serve`` to its end (an exception after ``timeout`` seconds)."""
    return subprocess.run([*COS, "serve"], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (
            {"COS_DB_HOST": "db.invalid"},
            "cos: cannot reach PostgreSQL at db.invalid:5432 as 'postgres' (COS_DB_HOST,"
            " COS_DB_PORT, COS_DB_USER, COS_DB_PASSWORD): the host name does not resolve",
        ),
        (
            {"COS_DB_HOST": "127.0.0.1", "COS_DB_PORT": "refused"},
            "cos: cannot reach PostgreSQL at 127.0.0.1:{port} as 'postgres' (COS_DB_HOST,"
            " COS_DB_PORT, COS_DB_USER, COS_DB_PASSWORD): connection refused",
        ),
    ],
)
def test_an_unreachable_database_is_retried_then_one_line(
    where: dict[str, str], expected: str
) -> None:
    port = str(free_port())
    where = {k: port if v == "refused" else v for k, v in where.items()}
    env = serve_env(1, free_port(), COS_DB_CONNECT_RETRY_SECONDS="2", **where)
    result = run_serve(env)
    assert one_line_failure(result).startswith(expected.format(port=port))
    attempts = [line for line in result.stderr.splitlines() if "retrying for up to 2 s" in line]
    assert len(attempts) >= 2, result.stderr  # each attempt is logged


def test_a_refused_login_is_one_line_at_once(database_server: DatabaseTarget) -> None:
    env = serve_env(
        1, free_port(), **{**db_env(database_server), "COS_DB_USER": "no_such_role_here"}
    )
    result = run_serve(env)
    last = one_line_failure(result)
    assert last.startswith(
        f"cos: PostgreSQL at {database_server.host}:{database_server.port} refused user"
        " 'no_such_role_here' (COS_DB_USER, COS_DB_PASSWORD): "
    )
    assert "retrying" not in result.stderr  # waiting does not cure a wrong login


def test_a_taken_port_is_one_line(database: DatabaseTarget) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(serve_env(1, port, **db_env(database)), timeout=120)
    assert one_line_failure(result) == (
        f"cos: COS_PORT: 127.0.0.1:{port} is already in use (COS_ADDRESS, COS_PORT):"
        " stop what listens there or choose another port"
    )


def test_a_missing_write_side_ca_file_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "ca.pem")
    env = serve_env(
        1, free_port(), COS_WRITE_SIDE_USE_TLS="true", COS_WRITE_SIDE_TLS_CA_FILE=missing
    )
    result = run_serve(env)
    assert one_line_failure(result) == (
        "cos: COS_WRITE_SIDE_TLS_CA_FILE: cannot read the CA file: No such file or directory"
        f" (got {missing!r})"
    )
    assert result.stderr.count("\n") == 1


def test_json_logs_from_the_driver_and_the_shard_host_and_the_warnings(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    env = serve_env(
        write_handler,
        free_port(),
        **db_env(database),
        LOG_STYLE="JSON",
        COS_SERVICE_NAME="accounts",
        COS_DB_DB="x",
        COS_SNAPSHOT_FREQENCY="5",
    )
    serve = Serve(env)
    serving.append(serve)
    serve.process.wait_for(r"gRPC server started")
    assert serve.stop() == 0
    serving.remove(serve)
    records = [json.loads(line) for line in serve.process.lines]  # every line is JSON
    by_logger = {(r["logger_name"], r["message"].split(":")[0]) for r in records}
    assert ("cos.serve", "cos serve ready") in by_logger
    ready = next(r["message"] for r in records if r["message"].startswith("cos serve ready"))
    assert ready.endswith(f" listening on 127.0.0.1:{env['COS_PORT']}")  # a lone node: loopback
    assert any(r["logger_name"] == "cos.node" for r in records)  # from the Ray actor
    assert {r["service"] for r in records} == {"accounts"}
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert "COS_DB_DB has no effect: the database name is COS_DB_NAME" in warnings
    assert (
        "COS_SNAPSHOT_FREQENCY is not a setting and has no effect"
        " (did you mean COS_SNAPSHOT_FREQUENCY?)" in warnings
    )
    assert records[-1]["message"] == "cos serve stopped"
    assert not any("\x1b[" in line for line in serve.process.lines)


def test_a_folder_and_variables_run_only_the_folder_read_sides_as_in_chief_of_state(
    database: DatabaseTarget,
    write_handler: int,
    serving: list[Serve],
    start_reader: Callable[..., Reader],
    tmp_path: Path,
) -> None:
    in_folder, in_variables = start_reader("folder-side"), start_reader("READSIDE_1")
    folder = tmp_path / "readsides"
    folder.mkdir()
    (folder / "accounts.yaml").write_text(
        f"readSideId: folder-side\nhost: 127.0.0.1\nport: {in_folder.port}\n"
    )
    env = serve_env(
        write_handler,
        free_port(),
        **db_env(database),
        COS_READ_SIDE_ENABLED="true",
        COS_READ_SIDE_CONFIG=str(folder),
        COS_READ_SIDE_CONFIG__HOST__READSIDE_1="127.0.0.1",
        COS_READ_SIDE_CONFIG__PORT__READSIDE_1=str(in_variables.port),
    )
    serve = Serve(env)
    serving.append(serve)
    serve.stub.ProcessCommand(request("rs-either", add=[3]))
    deadline = time.monotonic() + 60
    while in_folder.delivered() != [("rs-either", 1)]:
        assert time.monotonic() < deadline, in_folder.delivered()
        time.sleep(0.05)
    unknown = cli(int(env["COS_PORT"]), "offset", "--id", "READSIDE_1")
    assert unknown.stderr.startswith("error: NOT_FOUND: read side 'READSIDE_1' is not configured")
    assert in_variables.records("attempt") == []
    output = serve.process.output
    assert "COS_READ_SIDE_CONFIG is set, so the 2 COS_READ_SIDE_CONFIG__* variables" in output
    assert (
        f"read side folder-side: handler 127.0.0.1:{in_folder.port}, failurePolicy=none"
        " (retry forever), autoStart=true, enabled=true, timeout=60000 ms" in output
    )
    assert "read side READSIDE_1" not in output
