"""asyncpg's errors turned into the runtime's, in one place (no database needed)."""

from __future__ import annotations

import asyncpg
import pytest

from cos.errors import ConflictError, CosError, JournalRejectedError, JournalUnavailableError
from cos.postgres import PostgresDatastore


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (asyncpg.UniqueViolationError("duplicate key"), ConflictError),
        # A database coming back says "starting up": retry, never INTERNAL.
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            JournalUnavailableError,
        ),
        (asyncpg.AdminShutdownError("terminating connection"), JournalUnavailableError),
        (asyncpg.TooManyConnectionsError("too many clients"), JournalUnavailableError),
        (asyncpg.DeadlockDetectedError("deadlock"), JournalUnavailableError),
        (ConnectionRefusedError(111, "refused"), JournalUnavailableError),
        # Data the server will refuse every time: permanent, never UNAVAILABLE.
        (asyncpg.ProgramLimitExceededError("index row requires 10264 bytes"), JournalRejectedError),
        (asyncpg.CharacterNotInRepertoireError("invalid byte sequence"), JournalRejectedError),
    ],
)
async def test_each_database_error_becomes_the_runtimes(
    raised: Exception, expected: type[CosError]
) -> None:
    with pytest.raises(expected) as caught:
        async with PostgresDatastore.errors("journal write to shard 3"):
            raise raised
    assert str(caught.value).startswith("journal write to shard 3")
