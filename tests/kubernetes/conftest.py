"""A real Kubernetes 1.20 on this machine (scripts/kubernetes-local.sh), the runtime's image
loaded into its containerd, and the test PostgreSQL, Redis and write handler reachable from
the pods at the node's address."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cos.postgres import DatabaseTarget
from tests.support.image import build_image
from tests.support.kubernetes import IMAGE, Cluster, local, serve_on_node
from tests.support.relay import Relay


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


@pytest.fixture(scope="session")
def pod_write_handler(kubernetes: Cluster) -> Iterator[int]:
    """The test write handler, for the pods."""
    yield from serve_on_node("tests/handlers/writer.py", kubernetes)


@pytest.fixture(scope="session")
def pod_bank_handler(kubernetes: Cluster) -> Iterator[int]:
    """The bank example's write handler, for the pods."""
    yield from serve_on_node("examples/bank/handler.py", kubernetes)
