"""Fixtures for every tier, and each test's tier marker, set from its folder.

The tiers (``pytest -m <tier>``): ``unit`` (pure, no Ray, no database), ``helm`` (the chart
rendered by helm), ``integration`` (PostgreSQL, a local Ray and handler processes),
``cluster`` (multi-node Ray clusters on this machine), ``image`` (the container image, built
with podman) and ``kubernetes`` (a local Kubernetes running that image)."""

from __future__ import annotations

import os
import shutil

# Ray uses the loopback address for every node when this is 0 (read when Ray is
# imported, so before any import of it): all test traffic stays on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from cos.postgres import DatabaseTarget, migrate
from tests.support.database import drop_schema, find_database, new_schema_name
from tests.support.otlp import RunningReceiver
from tests.support.processes import start_write_handler

# The tiers, each a folder of tests/ and the marker its tests carry (registered in
# pyproject.toml, checked by tests/unit/test_tiers.py).
TIERS = ("unit", "helm", "integration", "cluster", "image", "kubernetes")
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the first folder under tests/."""
    for item in items:
        tier = item.path.resolve().relative_to(_HERE).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in a tier's folder {TIERS}")
        item.add_marker(tier)


@pytest.fixture(scope="session")
def database_server() -> Iterator[DatabaseTarget]:
    """The PostgreSQL server the tests use (see find_database in tests/support/database.py)."""
    target, embedded = find_database()
    yield target
    if embedded is not None:
        embedded.stop()
        shutil.rmtree(embedded.data_dir, ignore_errors=True)  # the session made it


@pytest.fixture
async def database(database_server: DatabaseTarget) -> AsyncIterator[DatabaseTarget]:
    """A fresh schema, migrated by alembic, dropped after the test."""
    target = database_server.with_schema(new_schema_name())
    await migrate(target)
    yield target
    await drop_schema(target)


@pytest.fixture
async def db(database: DatabaseTarget) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test's schema, to look at what was written."""
    conn = await asyncpg.connect(**database.connect_kwargs())
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def write_handler() -> Iterator[int]:
    """The test write handler in its own process; yields its port."""
    process, port = start_write_handler()
    yield port
    process.stop()


@pytest.fixture
def receiver() -> Iterator[RunningReceiver]:
    """An OTLP receiver (gRPC and HTTP) in this process, collecting the spans sent to it."""
    running = RunningReceiver()
    yield running
    running.stop()
