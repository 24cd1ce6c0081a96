"""One asyncpg pool per process, shared by the stores of this package, and the one
place that turns asyncpg's errors into the runtime's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from cos.background import Background
from cos.errors import ConflictError, JournalRejectedError, JournalUnavailableError
from cos.postgres._database import DatabaseTarget
from cos.postgres._settings import DEFAULT_POOL, PoolLimits

# Failures of the connection or the server's state, not of the statement: the same call
# may succeed later. Among them: the database starting up or shutting down (57P03,
# 57P01), too many connections (53300), a serialization failure or deadlock (40xxx).
_TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)


class PostgresDatastore:
    """The pool of one process and the translation of its errors."""

    def __init__(self, pool: asyncpg.Pool, max_lifetime: float | None = None) -> None:
        self.pool = pool
        self._background = Background()
        if max_lifetime:
            self._background.start(self._renew_forever(max_lifetime))

    @classmethod
    async def open(
        cls, target: DatabaseTarget, limits: PoolLimits = DEFAULT_POOL
    ) -> PostgresDatastore:
        """Open a pool to ``target``: ``min_size`` connections stay open, others close
        after ``idle_timeout`` seconds unused, all are renewed every ``max_lifetime``."""
        try:
            pool = await asyncpg.create_pool(
                **target.connect_kwargs(),
                min_size=min(limits.min_size, limits.max_size),
                max_size=limits.max_size,
                max_inactive_connection_lifetime=limits.idle_timeout,
                reset=_keep_session,
            )
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot reach the journal database: {exc}") from exc
        return cls(pool, limits.max_lifetime)

    @staticmethod
    @contextlib.asynccontextmanager
    async def errors(what: str) -> AsyncIterator[None]:
        """Raise the runtime's error for a failure of the block: a unique violation is a
        :class:`ConflictError`, a lost connection or a server not ready
        :class:`JournalUnavailableError` (retryable), any other refusal by the server
        :class:`JournalRejectedError` (it would refuse again). ``what`` says what was
        being done."""
        try:
            yield
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"{what}: a revision already exists: {exc}") from exc
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"{what}: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise JournalRejectedError(f"{what}: the database refused it: {exc}") from exc

    async def _renew_forever(self, lifetime: float | None) -> None:
        # asyncpg has no per-connection lifetime: expiring the pool's connections closes
        # each one when it is next released and opens a fresh one on its next use.
        while lifetime:
            await asyncio.sleep(lifetime)
            await self.pool.expire_connections()

    async def close(self) -> None:
        """Close the pool."""
        await self._background.stop()
        await self.pool.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    # The stores set no session state (no LISTEN, advisory lock, cursor or SET), so
    # asyncpg's reset query on every release would be a wasted round trip per command.
    # Only a transaction left open by a cancelled call is undone.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")
