"""Fixtures for every suite: the database server and a migrated schema per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from cos.journal.database import DatabaseTarget
from cos.journal.migrate import migrate
from tests.support import drop_schema, find_database, new_schema_name


@pytest.fixture(scope="session")
def database_server() -> Iterator[DatabaseTarget]:
    """The PostgreSQL server the tests use (see tests/support.find_database)."""
    target, embedded = find_database()
    yield target
    if embedded is not None:
        embedded.stop()


@pytest.fixture
async def database(database_server: DatabaseTarget) -> AsyncIterator[DatabaseTarget]:
    """A fresh schema, migrated by alembic, dropped after the test."""
    target = database_server.with_schema(new_schema_name())
    await migrate(target)
    yield target
    await drop_schema(target)
