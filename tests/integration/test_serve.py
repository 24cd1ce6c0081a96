"""``cos serve`` / ``cos migrate`` as a user runs them: real processes, real signals."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.journal.database import DatabaseTarget
from cos.journal.layout import pin_shard_count
from tests.integration.commands import request, state_of
from tests.support import COS, Process, db_env, free_port, serve_env


class Serve:
    """A running ``cos serve`` with a sync client."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = Process([*COS, "serve"], env=env)
        self.process.wait_for(r"cos serve ready", timeout=180)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{env['COS_PORT']}")
        self.stub = service_pb2_grpc.ChiefOfStateServiceStub(self.channel)

    def stop(self) -> int:
        self.channel.close()
        return self.process.stop()


@pytest.fixture
def serving() -> Iterator[list[Serve]]:
    running: list[Serve] = []
    yield running
    for serve in running:
        serve.stop()


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
