"""The runtime image, for real: built with podman from the Dockerfile on a debootstrap base,
then run as a container against the test PostgreSQL and the test write handler."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import grpc
import pytest

from chief_of_state.v1 import service_pb2_grpc
from cos.postgres import DatabaseTarget
from tests.support.commands import request, state_of
from tests.support.image import build_image
from tests.support.processes import ROOT, free_port

CONF = {"CONTAINERS_CONF": str(ROOT / "docker/containers.conf")}


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        env={**os.environ, **CONF},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def image() -> str:
    return build_image("test")


@pytest.mark.timeout(900)  # a first build downloads the base packages and the wheels
async def test_the_image_serves_as_a_non_root_container_and_stops_on_sigterm(
    image: str, database: DatabaseTarget, write_handler: int
) -> None:
    inspected = podman(
        "image", "inspect", image, "--format", "{{.Config.User}} {{.Config.Entrypoint}}"
    )
    assert inspected.stdout.split() == ["10001", "[cos]"], inspected.stdout
    port, name = free_port(), f"cos-test-{uuid.uuid4().hex[:8]}"
    env = {
        "COS_WRITE_SIDE_HOST": "127.0.0.1",
        "COS_WRITE_SIDE_PORT": str(write_handler),
        "COS_DB_HOST": database.host,
        "COS_DB_PORT": str(database.port),
        "COS_DB_USER": database.user,
        "COS_DB_PASSWORD": database.password or "unused",
        "COS_DB_NAME": database.database,
        "COS_DB_SCHEMA": database.schema,
        "COS_PORT": str(port),
        "COS_ADMIN_TOKEN": "image-test-token",
    }
    flags = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    started = podman(
        "run", "-d", "--name", name, "--init", "--network=host", "--shm-size=256m", *flags, image
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 180
        while "cos serve ready" not in podman("logs", name).stdout + podman("logs", name).stderr:
            assert time.monotonic() < deadline, podman("logs", name).stderr[-3000:]
            time.sleep(1)
        probe = podman("exec", name, "cos", "health")
        assert (probe.returncode, probe.stdout.strip()) == (0, "SERVING"), probe
        stub = service_pb2_grpc.ChiefOfStateServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        reply = stub.ProcessCommand(request("in-a-container", add=[7]), timeout=30)
        assert (reply.meta.revision_number, state_of(reply)["total"]) == (1, 7.0)
        stopped = podman("stop", "-t", "60", name)
        assert stopped.returncode == 0, stopped.stderr
        code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        logs = podman("logs", name)
        assert code == "0", logs.stderr[-3000:]
        assert "cos serve stopped" in logs.stdout + logs.stderr
    finally:
        podman("rm", "-f", name)
