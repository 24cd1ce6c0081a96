"""Fixtures for every suite: the database server and a migrated schema per test."""

from __future__ import annotations

import os
import shutil

# Ray uses the loopback address for every node when this is 0 (read when Ray is
# imported, so before any import of it): all test traffic stays on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from cos.postgres import DatabaseTarget, migrate
from tests.support import drop_schema, find_database, new_schema_name, start_write_handler


@pytest.fixture(scope="session")
def database_server() -> Iterator[DatabaseTarget]:
    """The PostgreSQL server the tests use (see tests/support.find_database)."""
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
