"""Integration fixtures: a session Ray, the test write handler process, runtimes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import ray

from chief_of_state.v1 import service_pb2_grpc
from cos import postgres
from cos.postgres import DatabaseTarget
from cos.runtime import start_runtime
from cos.sharding import NAMESPACE
from tests.support.runtimes import RunningRuntime, StartRuntime, runtime_settings
from tests.support.serve import Serve


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
