"""Where the journal database is (``COS_DB_*``): the PostgreSQL backend's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr

from cos.config import Part, lower_case


@dataclass(frozen=True)
class PoolLimits:
    """How many connections a process keeps and for how long (``COS_DB_POOL_*``)."""

    max_size: int = 20
    min_size: int = 1
    idle_timeout: float = 60.0  # seconds an idle connection beyond ``min_size`` is kept
    max_lifetime: float | None = None  # seconds after which connections are renewed


DEFAULT_POOL = PoolLimits()

SslMode = Annotated[
    Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
    BeforeValidator(lower_case),
]


class DatabaseSettings(Part):
    """Where the journal lives (``COS_DB_*``). No host set means an embedded server."""

    env_prefix = "COS_DB_"

    host: str | None = Field(None, description="PostgreSQL host; unset = embedded server")
    port: int = Field(5432, gt=0, lt=65536, description="PostgreSQL port")
    user: str = Field("postgres", description="PostgreSQL user")
    password: SecretStr = Field(SecretStr(""), description="PostgreSQL password")
    password_file: str | None = Field(
        None, description="file holding the PostgreSQL password (instead of COS_DB_PASSWORD)"
    )
    name: str = Field("postgres", description="PostgreSQL database name")
    schema_: str = Field(
        "public",
        alias="COS_DB_SCHEMA",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="schema holding the runtime's tables",
    )
    pool_max_size: int = Field(20, ge=2, description="most connections per host process")
    pool_min_idle_connections: int = Field(
        1, ge=1, description="connections each host process keeps open when idle"
    )
    pool_idle_timeout_ms: int = Field(
        60_000,
        gt=0,
        description="an idle connection beyond the minimum is closed after this, in ms",
    )
    pool_max_lifetime_ms: int = Field(
        120_000, gt=0, description="connections are renewed after this, in ms"
    )
    connect_retry_seconds: float = Field(
        60.0,
        ge=0,
        description="how long start-up waits for PostgreSQL to accept connections, in seconds",
    )
    ssl_mode: SslMode = Field(
        "prefer",
        description="TLS to PostgreSQL, as libpq: disable, allow, prefer, require, verify-ca,"
        " verify-full",
    )
    ssl_root_cert: str | None = Field(
        None, description="PEM CAs that sign PostgreSQL's certificate (verify-ca, verify-full)"
    )
    ssl_cert: str | None = Field(None, description="PEM client certificate for PostgreSQL")
    ssl_key: str | None = Field(None, description="PEM private key of COS_DB_SSL_CERT")
    embedded_dir: str = Field(
        ".cos-data/postgres",
        alias="COS_EMBEDDED_DB_DIR",
        description="data folder of the embedded PostgreSQL (used when COS_DB_HOST is unset)",
    )

    def tls_parameters(self) -> tuple[tuple[str, str], ...]:
        """libpq's TLS parameters (``sslmode``…) of the configured server; none when all
        are left at their defaults."""
        values = {
            "sslmode": self.ssl_mode,
            "sslrootcert": self.ssl_root_cert,
            "sslcert": self.ssl_cert,
            "sslkey": self.ssl_key,
        }
        given = tuple((k, v) for k, v in values.items() if v is not None)
        return () if given == (("sslmode", "prefer"),) else given

    @property
    def pool_limits(self) -> PoolLimits:
        """How many connections each process keeps, and for how long."""
        return PoolLimits(
            max_size=self.pool_max_size,
            min_size=self.pool_min_idle_connections,
            idle_timeout=self.pool_idle_timeout_ms / 1000,
            max_lifetime=self.pool_max_lifetime_ms / 1000,
        )

    @property
    def embedded(self) -> bool:
        """True when no database server is configured."""
        return self.host is None
