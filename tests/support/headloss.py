"""A head and a worker ``ray start`` node, each with a ``cos serve``, whose head can be
SIGKILLed and started again: for tests/cluster/test_head_loss.py and bench/faults.py.

With ``redis``, the head keeps Ray's control store (GCS) in the local Redis (Ray's GCS
fault tolerance), under a namespace of its own that :meth:`HeadCluster.close` drops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field

from cos.postgres import DatabaseTarget
from tests.support.database import db_env
from tests.support.processes import free_port
from tests.support.raynodes import RAY_ENV, NodeServe, RayNode
from tests.support.serve import serve_env

REDIS = ("127.0.0.1", "6379")


def redis_cli(*args: str) -> str:
    """Run ``redis-cli`` against the local Redis; its output."""
    found = subprocess.run(
        ["redis-cli", "-h", REDIS[0], "-p", REDIS[1], *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return found.stdout


@dataclass
class HeadCluster:
    """A head (restartable on its port) and a worker, each with a ``cos serve``."""

    env: dict[str, str]  # what every cos serve shares
    handler: int
    head_env: dict[str, str]  # Ray's GCS fault tolerance, or nothing
    head: RayNode
    worker: RayNode | None = None
    serves: dict[str, NodeServe] = field(default_factory=dict)  # "head"/"worker" -> cos serve

    @classmethod
    def start(
        cls,
        target: DatabaseTarget,
        handler: int,
        *,
        redis: bool,
        failure_timeout: float,
        reconnect_timeout: int,
    ) -> HeadCluster:
        """Start the head and its cos serve first, so the coordinator lives on the head
        (the only node when it is made), then the worker and its cos serve."""
        head_env = {}
        if redis:
            assert redis_cli("PING").strip() == "PONG", "Redis must run at 127.0.0.1:6379"
            head_env = {
                "RAY_REDIS_ADDRESS": ":".join(REDIS),
                "RAY_external_storage_namespace": f"costest{uuid.uuid4().hex[:10]}",
            }
        common = {
            **db_env(target),
            "COS_NUM_SHARDS": "8",
            "COS_ADDRESS": "0.0.0.0",
            "COS_CLUSTER_NAME": f"head{uuid.uuid4().hex[:8]}",
            "COS_HOST_FAILURE_TIMEOUT_SECONDS": str(failure_timeout),
            "COS_RAY_GCS_RECONNECT_TIMEOUT_SECONDS": str(reconnect_timeout),
            **RAY_ENV,
        }
        cluster = cls(common, handler, head_env, RayNode(None, **head_env))
        try:
            cluster.serve("head", cluster.head)
            reconnect = {"RAY_gcs_rpc_server_reconnect_timeout_s": str(reconnect_timeout)}
            cluster.worker = RayNode(cluster.head.address, **reconnect)
            cluster.serve("worker", cluster.worker)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def serve(self, name: str, node: RayNode) -> NodeServe:
        """Start ``cos serve`` on ``node``."""
        env = serve_env(self.handler, free_port(), **self.env, COS_RAY_TEMP_DIR=node.temp_dir)
        self.serves[name] = NodeServe(env, "--address", node.address)
        return self.serves[name]

    def kill_head(self) -> None:
        """SIGKILL every process of the head node: Ray's and its cos serve's."""
        os.killpg(self.serves["head"].process.proc.pid, signal.SIGKILL)
        self.head.stop()

    def restart_head(self) -> NodeServe:
        """A new head on the old one's address, and its cos serve."""
        port = int(self.head.address.split(":")[1])
        self.head = RayNode(None, port=port, **self.head_env)
        return self.serve("head", self.head)

    def close(self) -> None:
        """Stop every process; drop Ray's keys in Redis."""
        for serve in self.serves.values():
            serve.process.stop()
        if self.worker is not None:
            self.worker.stop()
        self.head.stop()
        namespace = self.head_env.get("RAY_external_storage_namespace")
        if namespace:
            for key in redis_cli("--scan", "--pattern", f"*{namespace}*").split():
                redis_cli("DEL", key)
