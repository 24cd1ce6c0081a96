"""The set-up and tear-down of bench/cluster.py: its settings, the handler, the schema, the
Ray cluster, the runtime on it, and the nodes and hosts that join and leave during a run.

Each ``start_*`` step registers its own clean-up with an ``ExitStack``. bench/cluster.py
sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` before Ray is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import ray
from load import Call
from processes import ServerProcess
from ray.cluster_utils import Cluster
from run import HANDLER_READY, REPO_DIR, BenchSettings, drop_schemas, free_port

from cos.postgres import DatabaseTarget, migrate
from cos.runtime import (
    FAST_NODE_FAILURE,
    Runtime,
    alive_nodes,
    launch_host,
    register_host,
    start_runtime,
)
from cos.settings import CosSettings, settings_from
from cos.sharding import NAMESPACE, PORT_LABEL, ClusterSettings

PARTS = ("forward", "handover", "failover")
DEFAULT_FAILURE_TIMEOUT = ClusterSettings().host_failure_timeout_seconds
TABLE_PAUSE = 0.1  # between reads of the coordinator's table
RAY_TIMEOUT = 120.0  # any one call to an actor


class BenchError(Exception):
    """The runtime did not do what a part waits for; the message says what."""


@dataclass(frozen=True)
class ClusterBenchSettings:
    """Everything one run needs, from the command line."""

    concurrency: int = 32
    duration: float = 15.0
    warmup: float = 3.0
    entities: int = 512
    trials: int = 5
    only: tuple[str, ...] = PARTS
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "postgres"
    db_password: str | None = None
    db_name: str = "postgres"
    num_shards: int = 16
    host_failure_timeout: float = DEFAULT_FAILURE_TIMEOUT
    keep_schemas: bool = False
    log_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="cos-bench-cluster-"))
    )

    def database(self, schema: str) -> DatabaseTarget:
        """The run's schema on the configured server."""
        password = self.db_password or ""
        return DatabaseTarget(
            self.db_host, self.db_port, self.db_user, self.db_name, schema, password
        )

    def for_run_py(self) -> BenchSettings:
        """The database options as bench/run.py's settings (for its drop_schemas)."""
        return BenchSettings(
            db_host=self.db_host,
            db_port=self.db_port,
            db_user=self.db_user,
            db_password=self.db_password,
            db_name=self.db_name,
            log_dir=self.log_dir,
        )


@dataclass
class Deployment:
    """The Ray cluster, the runtime on it, and host A, where every command is sent."""

    cluster: Cluster
    runtime: Runtime
    settings: CosSettings
    target: DatabaseTarget
    home: str

    @property
    def address(self) -> str:
        """Host A's gRPC address."""
        return self.runtime.addresses[self.home]


@dataclass(frozen=True)
class Span:
    """From ``start`` to ``end``, times from ``time.perf_counter``."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Its length."""
        return self.end - self.start

    def overlaps(self, call: Call) -> bool:
        """Whether the call was in flight at some moment of the span."""
        return call.started <= self.end and call.completed >= self.start


@dataclass(frozen=True)
class Joined:
    """A host started on a new node and registered with the coordinator."""

    host_id: str
    start: Span  # launch_host: the actor created and its gRPC server started
    register: Span  # register_host: the hand-over of its shards to it
    shards: int


# -- nodes and hosts during a run ----------------------------------------------------------


def add_node(cluster: Cluster) -> Any:
    """A new node with a free gRPC port as its label, once Ray sees it; main thread only."""
    labels = {PORT_LABEL: str(free_port())}
    node = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", labels=labels)
    take_sigterm()
    cluster.wait_for_nodes()
    return node


def node_info(node: Any) -> dict[str, Any]:
    """The node as ``ray.nodes()`` describes it (what the runtime's deploy module takes)."""
    return next(n for n in alive_nodes() if n.node_id == node.node_id)


def join(dep: Deployment, node: dict[str, Any]) -> Joined:
    """deploy.start_host's two steps, timed apart: the host's start, then its registration."""
    began = time.perf_counter()
    host_id = launch_host(dep.runtime, dep.settings, dep.target, node)
    started = time.perf_counter()
    shards = register_host(dep.runtime, host_id)
    return Joined(host_id, Span(began, started), Span(started, time.perf_counter()), len(shards))


def leave(dep: Deployment, host_id: str) -> Span:
    """Runtime.leave's two steps, with the hand-over (the deregistration) timed alone."""
    began = time.perf_counter()
    dep.runtime.hand_over(host_id)
    handed_over = Span(began, time.perf_counter())
    dep.runtime.stop_host(host_id)
    return handed_over


async def owners_of(dep: Deployment) -> dict[int, str]:
    """The coordinator's table: shard -> owning host id."""
    table = await asyncio.to_thread(
        ray.get, dep.runtime.coordinator.table.remote(), timeout=RAY_TIMEOUT
    )
    return {ownership.shard: ownership.host_id for ownership in table}


async def wait_balanced(dep: Deployment, timeout: float = 60.0) -> dict[int, str]:
    """The table, once every shard is owned by a host the bench knows, evenly."""
    deadline = time.perf_counter() + timeout
    while True:
        owners = await owners_of(dep)
        counts = Counter(owners.values())
        if (
            len(owners) == dep.settings.cluster.num_shards
            and set(counts) == set(dep.runtime.hosts)
            and max(counts.values()) - min(counts.values()) <= 1
        ):
            return owners
        if time.perf_counter() > deadline:
            raise BenchError(f"the shard table is not balanced after {timeout:.0f} s: {counts}")
        await asyncio.sleep(TABLE_PAUSE)


# -- start and stop ------------------------------------------------------------------------


def _quietly(what: str, step: Callable[[], object]) -> None:
    """One clean-up step; a failure is reported, not raised, so that it never hides the
    error that ended the run."""
    try:
        step()
    except Exception as exc:
        print(f"bench: could not {what}: {exc}", file=sys.stderr)


def start_handler(settings: ClusterBenchSettings, stack: contextlib.ExitStack) -> int:
    """The bank write handler, stopped with the stack; its port."""
    port = free_port()
    argv = [sys.executable, str(REPO_DIR / "examples" / "bank" / "handler.py")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    handler = ServerProcess("bank handler", argv, settings.log_dir / "handler.log")
    stack.callback(_quietly, "stop the handler", lambda: handler.stop(timeout=10))
    handler.start()
    handler.wait_for_output(HANDLER_READY, 60.0)
    return port


def fresh_schema(settings: ClusterBenchSettings, stack: contextlib.ExitStack) -> DatabaseTarget:
    """A new migrated schema, dropped with the stack unless --keep-schemas."""
    target = settings.database(f"bench_cluster_{uuid.uuid4().hex[:8]}")
    if not settings.keep_schemas:
        drop = functools.partial(drop_schemas, settings.for_run_py(), [target.schema])
        stack.callback(_quietly, "drop the schema", lambda: asyncio.run(drop()))
    asyncio.run(migrate(target))
    return target


def start_cluster(stack: contextlib.ExitStack) -> Cluster:
    """A head and one more node, each of 1 CPU on 127.0.0.1; this process joins it."""
    head = {
        "num_cpus": 1,
        "node_ip_address": "127.0.0.1",
        "labels": {PORT_LABEL: str(free_port())},
        "include_dashboard": False,
        "_system_config": FAST_NODE_FAILURE,
    }
    cluster = Cluster(initialize_head=True, head_node_args=head)
    stack.callback(_quietly, "stop the Ray cluster", cluster.shutdown)
    add_node(cluster)
    # log_to_driver off: the hosts' logs stay in Ray's log folder, out of the report.
    ray.init(
        address=cluster.address,
        namespace=NAMESPACE,
        logging_level=logging.WARNING,
        configure_logging=False,
        log_to_driver=False,
    )
    stack.callback(_quietly, "disconnect from Ray", ray.shutdown)
    take_sigterm()
    return cluster


def start_cos(
    cluster: Cluster,
    settings: ClusterBenchSettings,
    handler_port: int,
    target: DatabaseTarget,
    stack: contextlib.ExitStack,
) -> Deployment:
    """The coordinator and a host on each node, stopped with the stack."""
    cos = settings_from(
        {
            "COS_WRITE_SIDE_HOST": "127.0.0.1",
            "COS_WRITE_SIDE_PORT": handler_port,
            "COS_ADDRESS": "127.0.0.1",
            "COS_ADVERTISE_ADDRESS": "127.0.0.1",
            "COS_CLUSTER_NAME": f"bench{uuid.uuid4().hex[:8]}",
            "COS_NUM_SHARDS": settings.num_shards,
            "COS_HOST_FAILURE_TIMEOUT_SECONDS": settings.host_failure_timeout,
        }
    )
    runtime = start_runtime(cos, target)
    stack.callback(_quietly, "stop the runtime", runtime.stop)
    assert cluster.head_node is not None, "started with a head"
    head_id = cluster.head_node.node_id[:12]
    home = next(host_id for host_id in runtime.hosts if host_id.endswith(head_id))
    return Deployment(cluster, runtime, cos, target, home)


def take_sigterm() -> None:
    """SIGTERM unwinds the run like Ctrl-C, so that every clean-up step runs. Called again
    after ``ray.init`` and after each new node: both take SIGTERM for themselves."""
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt
