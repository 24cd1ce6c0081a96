"""Nothing listens unprotected, secrets stay secret (real cos serve processes)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import grpc
import psutil
import pytest
from pydantic import SecretStr

from chief_of_state.v1 import manager_pb2, manager_pb2_grpc
from cos.postgres import DatabaseTarget
from cos.v1 import cluster_pb2, cluster_pb2_grpc, readside_pb2, readside_pb2_grpc
from tests.support.commands import request
from tests.support.database import db_env
from tests.support.processes import ROOT, free_port
from tests.support.runtimes import StartRuntime
from tests.support.serve import OPERATOR_METADATA, Serve, serve_env


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listening(processes: list[psutil.Process]) -> dict[str, list[str]]:
    """Every TCP socket the processes listen on, by process name."""
    found: dict[str, list[str]] = {}
    for process in processes:
        try:
            sockets = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for sock in sockets:
            if sock.status == psutil.CONN_LISTEN:
                found.setdefault(process.name(), []).append(f"{sock.laddr.ip}:{sock.laddr.port}")
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].removeprefix("::ffff:")
    return ipaddress.ip_address(host).is_loopback


def test_a_local_cos_serve_listens_on_loopback_only_with_ray_token_auth(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    env = serve_env(write_handler, free_port(), **db_env(database))
    # The test session sets these for its own Ray; cos serve must set them itself.
    for name in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE"):
        env.pop(name, None)
    serve = Serve(env)
    serving.append(serve)
    tree = process_tree(serve.process.proc.pid)
    sockets = listening(tree)
    assert {"gcs_server", "raylet"} <= set(sockets), sockets
    every = [address for addresses in sockets.values() for address in addresses]
    assert all(is_loopback(address) for address in every), sockets  # GCS, raylet, workers
    raylet = next(p for p in tree if p.name() == "raylet")
    assert raylet.environ().get("RAY_AUTH_MODE") == "token"


def test_a_password_from_a_file_is_in_no_environment_and_no_log_line(
    database: DatabaseTarget, write_handler: int, serving: list[Serve], tmp_path: Path
) -> None:
    secret = "s3cret-" + os.urandom(8).hex()
    password_file = tmp_path / "password"
    password_file.write_text(secret + "\n")
    env = serve_env(write_handler, free_port(), **db_env(database))
    env.pop("COS_DB_PASSWORD", None)
    env["COS_DB_PASSWORD_FILE"] = str(password_file)
    serve = Serve(env)
    serving.append(serve)
    for process in process_tree(serve.process.proc.pid):
        try:
            environment = process.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        assert secret not in "\n".join(f"{k}={v}" for k, v in environment.items()), process
    assert serve.stop() == 0
    serving.remove(serve)
    assert secret not in serve.process.output


async def test_the_operator_api_needs_the_token_and_the_client_api_does_not(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(admin_token=SecretStr("the-token"))
    offsets = manager_pb2_grpc.ReadSideManagerServiceStub(cos.channel)
    shards = cluster_pb2_grpc.ClusterServiceStub(cos.channel)
    status = readside_pb2_grpc.ReadSideStatusServiceStub(cos.channel)
    calls = [
        lambda metadata: offsets.GetLatestOffset(
            manager_pb2.GetLatestOffsetRequest(read_side_id="x"), metadata=metadata
        ),
        lambda metadata: shards.GetShards(cluster_pb2.GetShardsRequest(), metadata=metadata),
        lambda metadata: status.GetReadSideStatus(
            readside_pb2.GetReadSideStatusRequest(read_side_id="x"), metadata=metadata
        ),
    ]
    for call in calls:
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # With the token: the call goes through (here to the manager's own answer).
    with pytest.raises(grpc.aio.AioRpcError) as known:
        await calls[0]((("authorization", "Bearer the-token"),))
    assert known.value.code() == grpc.StatusCode.NOT_FOUND  # no read side "x": it got in
    assert (await calls[1]((("authorization", "Bearer the-token"),))).shards
    assert (await cos.stub.ProcessCommand(request("open", add=[1]))).meta.revision_number == 1


async def test_with_no_operator_credential_the_operator_api_is_closed(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(admin_token=None)
    shards = cluster_pb2_grpc.ClusterServiceStub(cos.channel)
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await shards.GetShards(cluster_pb2.GetShardsRequest(), metadata=OPERATOR_METADATA)
    assert closed.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "COS_ADMIN_TOKEN" in (closed.value.details() or "")


def test_a_local_cos_serve_makes_an_operator_token_that_cos_cli_finds(
    database: DatabaseTarget, write_handler: int, serving: list[Serve], tmp_path: Path
) -> None:
    env = serve_env(write_handler, free_port(), **db_env(database))
    del env["COS_ADMIN_TOKEN"]
    serve = Serve(env, cwd=tmp_path)
    serving.append(serve)
    token_file = tmp_path / ".cos-data/admin-token"
    assert token_file.stat().st_mode & 0o077 == 0  # its user's only
    where = ["--cos-host", "127.0.0.1", "--cos-port", env["COS_PORT"]]
    bare = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    found = subprocess.run(
        [sys.executable, "-m", "cli.admin", *where, "cluster", "shards"],
        cwd=tmp_path,
        env={**bare, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    assert "4 shards on 1 hosts" in found.stdout
    elsewhere = subprocess.run(
        [sys.executable, "-m", "cli.admin", *where, "cluster", "shards"],
        cwd=ROOT,
        env=bare,
        capture_output=True,
        text=True,
    )
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.startswith("error: UNAUTHENTICATED"), elsewhere.stderr
    assert token_file.read_text().strip() not in serve.process.output
