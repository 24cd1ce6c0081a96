"""Where the database is, and the embedded PostgreSQL used when none is configured."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from cos.settings import DatabaseSettings

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

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect`` / ``asyncpg.create_pool``."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password or None,
            "database": self.database,
            "server_settings": {"search_path": self.schema},
        }

    def with_schema(self, schema: str) -> DatabaseTarget:
        """The same server and database, another schema."""
        return DatabaseTarget(self.host, self.port, self.user, self.database, schema, self.password)

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


class EmbeddedPostgres:
    """A PostgreSQL server in a local data folder, from the ``pgserver`` package."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server; returns its connection URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver logs every initdb/pg_ctl command line at INFO and warns when
        # XDG_RUNTIME_DIR is unset (it falls back to /tmp): keep only problems.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver import get_server  # type: ignore[attr-defined]

            self._server = get_server(self.data_dir, cleanup_mode="stop")
            url: str = self._server.get_uri()
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return url

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


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
        )
        return target, None
    embedded = EmbeddedPostgres(Path(settings.embedded_dir))
    return DatabaseTarget.from_url(embedded.start(), settings.schema_), embedded
