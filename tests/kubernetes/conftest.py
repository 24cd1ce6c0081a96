"""A real Kubernetes 1.20 on this machine (scripts/kubernetes-local.sh), the runtime's image
loaded into its containerd, and the test PostgreSQL, Redis and write handler reachable from
the pods at the node's address."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cos.postgres import DatabaseTarget
from tests.kubernetes.relay import Relay
from tests.support import ROOT, Process, build_image

LOCAL = ROOT / "scripts/kubernetes-local.sh"
IMAGE = "localhost/cos-ray:test"


def local(*args: str, timeout: float = 1800) -> str:
    done = subprocess.run(
        ["bash", str(LOCAL), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"kubernetes-local.sh {args}: {done.stdout}{done.stderr}"[-4000:]
    return done.stdout.strip()


@dataclass(frozen=True)
class Cluster:
    """The running Kubernetes: how to reach it and where pods reach this machine."""

    kubeconfig: str
    node_ip: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def run(self, tool: str, *args: str, timeout: float = 600, check: bool = True) -> str:
        binary = tool if tool == "kubectl" else str(ROOT / ".venv/bin" / tool)
        done = subprocess.run(
            [binary, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout

    def kubectl(self, *args: str, **kwargs: object) -> str:
        return self.run("kubectl", *args, **kwargs)  # type: ignore[arg-type]

    def helm(self, *args: str, **kwargs: object) -> str:
        return self.run("helm", *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def kubernetes() -> Iterator[Cluster]:
    local("build")  # a no-op once the binaries are cached (about 15 minutes the first time)
    local("up", timeout=300)
    cluster = Cluster(local("kubeconfig"), local("node-ip"))
    try:
        build_image("test")
        local("load-image", IMAGE, timeout=600)
        yield cluster
    finally:
        local("down", timeout=300)


@pytest.fixture(scope="session")
def reachable_database(database_server: DatabaseTarget, kubernetes: Cluster) -> Iterator[int]:
    """The test PostgreSQL at the node's address; yields the port."""
    relay = Relay(kubernetes.node_ip, (database_server.host, database_server.port)).start()
    yield relay.port
    relay.stop()


@pytest.fixture(scope="session")
def reachable_redis(kubernetes: Cluster) -> Iterator[int]:
    """The local Redis (Ray's GCS fault tolerance) at the node's address; yields the port."""
    relay = Relay(kubernetes.node_ip, ("127.0.0.1", 6379)).start()
    yield relay.port
    relay.stop()


def serve_on_node(script: str, cluster: Cluster) -> Iterator[int]:
    """A handler script (``--host``/``--port`` flags) listening on the node's address, where
    pods reach it; yields its port."""
    command = [sys.executable, str(ROOT / script), "--host", cluster.node_ip, "--port", "0"]
    process = Process(command)
    yield int(process.wait_for(r"listening on [\d.]+:(\d+)", timeout=30).group(1))
    process.stop()


@pytest.fixture(scope="session")
def pod_write_handler(kubernetes: Cluster) -> Iterator[int]:
    """The test write handler, for the pods."""
    yield from serve_on_node("tests/handlers/writer.py", kubernetes)


@pytest.fixture(scope="session")
def pod_bank_handler(kubernetes: Cluster) -> Iterator[int]:
    """The bank example's write handler, for the pods."""
    yield from serve_on_node("examples/bank/handler.py", kubernetes)
