"""Integration fixtures: a session Ray, the test write handler process, runtimes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import ray

from chief_of_state.v1 import service_pb2_grpc
from cos import postgres
from cos.postgres import DatabaseTarget
from cos.runtime import Runtime, start_runtime
from cos.settings import CosSettings
from cos.sharding import NAMESPACE
from tests.support import ADMIN_TOKEN, Serve, cos_settings, free_port


@pytest.fixture
def ray_session() -> None:
    """A real local Ray, started once and kept for the session (the cluster tests
    connect elsewhere and disconnect when done)."""
    if not ray.is_initialized():
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            num_cpus=2,
            include_dashboard=False,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            configure_logging=False,
        )


@pytest.fixture
async def datastore(database: DatabaseTarget) -> AsyncIterator[postgres.PostgresDatastore]:
    """A pool on the test's schema, for tests of the stores themselves."""
    datastore = await postgres.PostgresDatastore.open(database, postgres.PoolLimits(max_size=4))
    yield datastore
    await datastore.close()


def runtime_settings(write_handler: int, **overrides: Any) -> CosSettings:
    """Settings of a test's runtime: on loopback, a free port, a cluster name of its own."""
    values: dict[str, Any] = {
        "write_side_host": "127.0.0.1",
        "write_side_port": write_handler,
        "address": "127.0.0.1",
        "port": free_port(),
        "command_handler_timeout": 5.0,
        "advertise_address": "127.0.0.1",
        "cluster_name": f"t{uuid.uuid4().hex[:10]}",
        "admin_token": ADMIN_TOKEN,
    }
    values.update(overrides)
    return cos_settings(**values)


@dataclass
class RunningRuntime:
    """A runtime started for a test, with a client stub on its gRPC port."""

    runtime: Runtime
    settings: CosSettings
    channel: grpc.aio.Channel
    stub: service_pb2_grpc.ChiefOfStateServiceStub


StartRuntime = Callable[..., Awaitable[RunningRuntime]]


@pytest.fixture
async def start_cos(
    ray_session: None, database: DatabaseTarget, write_handler: int
) -> AsyncIterator[StartRuntime]:
    """Factory: start coordinator + shard host on the test's schema; stopped after the test."""
    started: list[RunningRuntime] = []

    async def start(**overrides: Any) -> RunningRuntime:
        settings = runtime_settings(write_handler, **overrides)
        runtime = await asyncio.to_thread(start_runtime, settings, database)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.server.port}")
        running = RunningRuntime(
            runtime, settings, channel, service_pb2_grpc.ChiefOfStateServiceStub(channel)
        )
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.close()
        await asyncio.to_thread(running.runtime.stop)


@pytest.fixture
def serving() -> Iterator[list[Serve]]:
    """``cos serve`` processes a test started (append them); stopped after it."""
    running: list[Serve] = []
    yield running
    for serve in running:
        serve.stop()
