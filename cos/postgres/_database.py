"""Where the database is, and waiting for it to accept connections at start-up."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_fixed,
)

from cos.errors import DatabaseUnreachableError
from cos.postgres._embedded import EmbeddedPostgres
from cos.postgres._settings import DatabaseSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseTarget:
    """Connection parameters of the journal database, resolved at start-up.

    ``host`` may be a folder holding a unix socket (the embedded server).
    """

    host: str
    port: int
    user: str
    database: str
    schema: str
    password: str = field(default="", repr=False)
    # TLS as libpq spells it (sslmode, sslrootcert, sslcert, sslkey); empty: the
    # default ("prefer": TLS when the server offers it, unverified).
    tls: tuple[tuple[str, str], ...] = ()

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``asyncpg.connect`` / ``asyncpg.create_pool``."""
        # asyncpg reads libpq's TLS parameters from a connection URL's query only.
        tls = {"dsn": f"postgresql://?{urlencode(self.tls)}"} if self.tls else {}
        return {
            **tls,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password or None,
            "database": self.database,
            "server_settings": {"search_path": self.schema},
        }

    def with_schema(self, schema: str) -> DatabaseTarget:
        """The same server and database, another schema."""
        return replace(self, schema=schema)

    @classmethod
    def from_url(cls, url: str, schema: str = "public") -> DatabaseTarget:
        """Parse ``postgresql://user:password@host:port/db`` (``?host=/socket/dir`` allowed)."""
        parsed = urlparse(url)
        socket_dir = parse_qs(parsed.query).get("host", [None])[0]
        return cls(
            host=socket_dir or parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            database=(parsed.path or "/postgres").lstrip("/") or "postgres",
            schema=schema,
            password=parsed.password or "",
        )


def resolve_target(settings: DatabaseSettings) -> tuple[DatabaseTarget, EmbeddedPostgres | None]:
    """The database to use: the configured server, or a started embedded one."""
    if settings.host is not None:
        target = DatabaseTarget(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            database=settings.name,
            schema=settings.schema_,
            password=settings.password.get_secret_value(),
            tls=settings.tls_parameters(),
        )
        return target, None
    embedded = EmbeddedPostgres(Path(settings.embedded_dir))
    return DatabaseTarget.from_url(embedded.start(), settings.schema_), embedded


# Refusals that waiting does not cure: a wrong login or database name, TLS that
# cannot work (an untrusted certificate, a server without TLS when TLS is required).
_PERMANENT = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.ClientConfigurationError,
    ssl.SSLError,
)


def _tls_refusal(exc: BaseException) -> bool:
    return isinstance(exc, (ssl.SSLError, asyncpg.ClientConfigurationError)) or (
        isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc)
    )


_ATTEMPT_TIMEOUT = 5.0


def _reason(exc: BaseException) -> str:
    """A failed connection attempt in a few words."""
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer within {_ATTEMPT_TIMEOUT:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _refusal(target: DatabaseTarget, exc: BaseException) -> DatabaseUnreachableError:
    where = f"PostgreSQL at {target.host}:{target.port}"
    if _tls_refusal(exc):
        return DatabaseUnreachableError(
            f"TLS to {where} failed (COS_DB_SSL_MODE, COS_DB_SSL_ROOT_CERT): {_reason(exc)}"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return DatabaseUnreachableError(
            f"{where} has no database {target.database!r} (COS_DB_NAME): {_reason(exc)}"
        )
    if isinstance(exc, _PERMANENT):
        return DatabaseUnreachableError(
            f"{where} refused user {target.user!r} (COS_DB_USER, COS_DB_PASSWORD): {_reason(exc)}"
        )
    return DatabaseUnreachableError(
        f"cannot reach {where} as {target.user!r} (COS_DB_HOST, COS_DB_PORT, COS_DB_USER,"
        f" COS_DB_PASSWORD): {_reason(exc)}"
    )


async def wait_for_database(target: DatabaseTarget, retry_seconds: float) -> None:
    """Return once ``target`` accepts a connection. A database starting next to us (in
    compose or Kubernetes) is normal, so unreachable is retried for ``retry_seconds``,
    each attempt logged; a refused login or a missing database fails at once. Raises
    :class:`DatabaseUnreachableError` naming the settings to check."""

    def log_attempt(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "PostgreSQL at %s:%s is not reachable yet (%s); attempt %d, retrying for up to %.0f s",
            target.host,
            target.port,
            _reason(exc) if exc else "?",
            state.attempt_number,
            retry_seconds,
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception(
            lambda exc: not isinstance(exc, _PERMANENT) and not _tls_refusal(exc)
        ),
        stop=stop_after_delay(retry_seconds),
        wait=wait_fixed(1.0),
        before_sleep=log_attempt,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                conn = await asyncpg.connect(
                    **{**target.connect_kwargs(), "timeout": _ATTEMPT_TIMEOUT}
                )
                await conn.close()
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _refusal(target, exc) from None
