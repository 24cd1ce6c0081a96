"""Runtime configuration, read once from the ``COS_*`` environment at start-up.

Names follow Chief of State where it has one. The environment is read here, by
:func:`load_settings` (pydantic-settings does, through it), and by
:mod:`cos.environment`, which says what in it has no effect; everything else receives
a frozen settings object through its constructor.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cos.logs import LogSettings, LogStyle
from cos.readside.config import ReadSideConfig, ReadSideConfigError, load_read_sides
from cos.telemetry.config import TelemetryConfig, TelemetryConfigError
from cos.tls import PEM_CERTIFICATE, TlsFileError, TlsFiles, read_pem
from cos.transport import ChannelSettings, Keepalive

HeaderList = Annotated[tuple[str, ...], NoDecode]


def _log_level(value: object) -> object:
    # Chief of State's names (logback: WARN, TRACE) next to Python's.
    aliases = {"WARN": "WARNING", "TRACE": "DEBUG", "FATAL": "CRITICAL"}
    if isinstance(value, str):
        level = aliases.get(value.strip().upper(), value.strip().upper())
        if level in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            return level
    raise ValueError("must be one of DEBUG, INFO, WARN, ERROR")


LogLevel = Annotated[str, BeforeValidator(_log_level)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_UNIT_SECONDS = {
    **dict.fromkeys(("", "ms", "milli", "millis", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hour", "hours"), 3600.0),
}


def _duration(value: object) -> object:
    # Chief of State's duration settings (HOCON): "60s", "1m", "500ms"; a bare number is ms.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000
    found = _DURATION.match(value.lower()) if isinstance(value, str) else None
    if found is None or found.group(2) not in _UNIT_SECONDS:
        raise ValueError("must be a duration: a number of ms, or with a unit (500ms, 60s, 1m, 1h)")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


# In seconds once read.
Duration = Annotated[float, BeforeValidator(_duration)]
Style = Annotated[
    LogStyle, BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v)
]


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class ServerProtocol(str, enum.Enum):
    """``COS_SERVER_PROTOCOL``, as Chief of State's main branch names it."""

    GRPC = "grpc"
    HTTP = "http"
    BOTH = "both"


class DeploymentMode(str, enum.Enum):
    """``COS_DEPLOYMENT_MODE``, as Chief of State names it."""

    DOCKER = "docker"
    KUBERNETES = "kubernetes"


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip().lower() for item in value.split(",") if item.strip())
    return value


SslMode = Annotated[
    Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
    BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
]


class DatabaseSettings(BaseSettings):
    """Where the journal lives (``COS_DB_*``). No host set means an embedded server."""

    model_config = SettingsConfigDict(env_prefix="COS_DB_", frozen=True, extra="ignore")

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
        alias="COS_DB_CONNECT_RETRY_SECONDS",
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
    def embedded(self) -> bool:
        """True when no database server is configured."""
        return self.host is None


class CosSettings(BaseSettings):
    """Everything ``cos serve`` needs. Each duration's unit is in its description."""

    model_config = SettingsConfigDict(env_prefix="COS_", frozen=True, extra="ignore")

    db: DatabaseSettings = Field(default_factory=lambda: DatabaseSettings())
    address: str = Field("0.0.0.0", description="address the gRPC server binds")
    port: int = Field(9000, gt=0, lt=65536, description="gRPC port of ChiefOfStateService")
    num_shards: int = Field(
        16, gt=0, le=4096, description="number of shards; fixed for a journal once written"
    )
    snapshot_frequency: int = Field(100, gt=0, description="events between snapshots")
    num_snapshots_to_retain: int = Field(2, gt=0, description="snapshots kept per entity")
    disable_snapshot: bool = Field(False, description="never write snapshots")
    journal_logical_deletion: bool = Field(
        False, description="mark events older than the oldest kept snapshot as deleted"
    )
    write_side_host: str = Field(description="host of the write handler")
    write_side_port: int = Field(gt=0, lt=65536, description="port of the write handler")
    write_side_use_tls: bool = Field(False, description="TLS to the write handler")
    write_side_tls_ca_file: str | None = Field(
        None, description="PEM CA bundle for the write handler (default: system roots)"
    )
    write_side_propagated_headers: HeaderList = Field(
        (), description="comma-separated request headers forwarded to the write handler"
    )
    write_persisted_headers: HeaderList = Field(
        (), description="comma-separated request headers stored in each event's meta"
    )
    write_side_proto_validation: bool = Field(
        False, description="reject events and states whose type is not listed"
    )
    write_side_event_protos: HeaderList = Field(
        (), description="comma-separated event type names allowed when validating"
    )
    write_side_state_protos: HeaderList = Field(
        (), description="comma-separated state type names allowed when validating"
    )
    command_handler_timeout: float = Field(
        5.0,
        gt=0,
        description="time the write handler gets for all calls of one command, in seconds",
    )
    grpc_calls_timeout: int = Field(
        60_000,
        gt=0,
        description="deadline of one handler call (write, and read without its own), in ms",
    )
    max_message_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        description="largest gRPC message in bytes: requests, replies, handler calls, an"
        " event with its state",
    )
    passivation_idle_seconds: float = Field(
        120.0, gt=0, description="an entity idle this long leaves the cache"
    )
    entity_cache_size: int = Field(
        10_000, gt=0, description="entities kept in memory per node, divided among its shards"
    )
    journal_max_batch: int = Field(
        500, gt=0, description="most commands flushed in one group-commit transaction"
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="time in-flight commands get to finish on shutdown"
    )
    read_side_enabled: bool = Field(False, description="deliver events to read sides")
    read_side_config: str | None = Field(
        None, description="YAML file, or folder of YAML files, configuring the read sides"
    )
    read_side_retry_min_seconds: float = Field(
        0.2, gt=0, description="first retry delay after a read handler failure, in seconds"
    )
    read_side_retry_max_seconds: float = Field(
        10.0, gt=0, description="longest retry delay for a failing read handler, in seconds"
    )
    read_sides: tuple[ReadSideConfig, ...] = Field(
        (), exclude=True, description="(from COS_READ_SIDE_CONFIG or COS_READ_SIDE_CONFIG__*)"
    )
    telemetry: TelemetryConfig = Field(
        TelemetryConfig(), exclude=True, description="(from the standard OTEL_* variables)"
    )
    metrics_port: int | None = Field(
        None,
        gt=0,
        lt=65536,
        description="port of the Prometheus metrics endpoint (/metrics); off when unset",
    )
    metrics_address: str | None = Field(
        None, description="address the metrics endpoint binds (default: COS_ADDRESS)"
    )
    subscription_enabled: bool = Field(
        False, description="serve the Subscribe/SubscribeAll streams of cos.v1.SubscriptionService"
    )
    subscription_buffer: int = Field(
        1000,
        gt=0,
        description="events buffered per subscriber before it catches up from the journal",
    )
    subscription_port: int | None = Field(
        None,
        gt=0,
        lt=65536,
        description="port where a separate, lower-priority process of each node serves the"
        " subscription streams (COS_PORT serves them too); unset: no such process",
    )
    server_protocol: ServerProtocol = Field(
        ServerProtocol.GRPC, description="grpc, http or both: the APIs served (gRPC always)"
    )
    http_enabled: bool = Field(
        False, description="serve the HTTP/JSON API (as COS_SERVER_PROTOCOL=both does)"
    )
    http_address: str | None = Field(
        None, description="address the HTTP/JSON API binds (default: COS_ADDRESS)"
    )
    http_port: int = Field(9001, gt=0, lt=65536, description="port of the HTTP/JSON API")
    proto_descriptors: str | None = Field(
        None,
        description="descriptor set file(s) (protoc --descriptor_set_out), comma separated:"
        " the HTTP API's JSON for those types",
    )
    idempotency_window_seconds: float = Field(
        86400.0,
        gt=0,
        description="how long a command's x-cos-idempotency-key is remembered, in seconds",
    )
    cluster_name: str = Field(
        "cos",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="names this runtime's Ray actors; runtimes sharing a Ray cluster differ",
    )
    advertise_address: str | None = Field(
        None,
        description="host other nodes use to reach this node's gRPC port (default: node IP)",
    )
    host_failure_timeout_seconds: float = Field(
        5.0, gt=0, description="a shard host silent this long is declared dead"
    )
    forward_retry_seconds: float = Field(
        30.0,
        ge=0,
        description="how long a command is retried while its shard moves (within its deadline)",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join; unset = start a local Ray"
    )
    ray_temp_dir: str | None = Field(
        None,
        description="--temp-dir of the Ray node to join, when several share one machine",
    )
    ray_gcs_reconnect_timeout_seconds: int = Field(
        60,
        gt=0,
        description="how long Ray processes outlive a lost Ray head (its GCS) before exiting",
    )
    deployment_mode: DeploymentMode = Field(
        DeploymentMode.DOCKER,
        description="docker or kubernetes (kubernetes: POD_IP is advertised)",
    )
    replica_count: int = Field(
        1, ge=1, description="nodes expected in the cluster (kubernetes cluster formation)"
    )
    kubernetes_app_label: str | None = Field(
        None, description="app label of the runtime's pods (required in kubernetes mode)"
    )
    pod_ip: str | None = Field(
        None, alias="POD_IP", description="this pod's IP (kubernetes mode; set by the chart)"
    )
    kubernetes_namespace: str | None = Field(
        None,
        description="namespace of the runtime's pods (kubernetes mode; default: the pod's own)",
    )
    kubernetes_formation_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="longest wait for COS_REPLICA_COUNT pods before the first shard assignment",
    )
    ray_auth_token: SecretStr | None = Field(
        None, description="Ray's cluster token (token authentication; default: Ray's own)"
    )
    ray_auth_token_file: str | None = Field(
        None, description="file holding Ray's cluster token (instead of COS_RAY_AUTH_TOKEN)"
    )
    write_side_breaker_enabled: bool = Field(
        False, description="circuit breaker on the write handler (as CoS's main branch)"
    )
    write_side_breaker_max_failures: int = Field(
        5, gt=0, description="failed write handler calls in a row that open the breaker"
    )
    write_side_breaker_call_timeout: Duration = Field(
        "60s",
        gt=0,
        validate_default=True,
        description="deadline of a write handler call under the breaker (60s, 500ms)",
    )
    write_side_breaker_reset_timeout: Duration = Field(
        "1m",
        gt=0,
        validate_default=True,
        description="how long an open write-side breaker fails calls at once",
    )
    read_side_breaker_enabled: bool = Field(
        False, description="circuit breaker on each read handler (as CoS's main branch)"
    )
    read_side_breaker_max_failures: int = Field(
        5, gt=0, description="failed read handler calls in a row that open its breaker"
    )
    read_side_breaker_call_timeout: Duration = Field(
        "10s",
        gt=0,
        validate_default=True,
        description="deadline of a read handler call under the breaker",
    )
    read_side_breaker_reset_timeout: Duration = Field(
        "1m",
        gt=0,
        validate_default=True,
        description="how long an open read-side breaker fails calls at once",
    )
    grpc_keepalive_enabled: bool = Field(
        False, description="HTTP/2 keepalive pings on the channels to handlers and peers"
    )
    grpc_keepalive_time: Duration = Field(
        "120s", gt=0, validate_default=True, description="time between keepalive pings (120s)"
    )
    grpc_keepalive_timeout: Duration = Field(
        "60s",
        gt=0,
        validate_default=True,
        description="how long a ping may go unanswered before the connection closes",
    )
    grpc_keepalive_without_calls: bool = Field(
        True, description="ping also while no call is in flight"
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate chain of the gRPC port (turns TLS on)"
    )
    tls_key_file: str | None = Field(None, description="PEM private key of COS_TLS_CERT_FILE")
    tls_client_ca_file: str | None = Field(
        None, description="PEM CAs whose client certificates callers must present (mutual TLS)"
    )
    tls_ca_file: str | None = Field(
        None, description="PEM CAs a node trusts its peers with (default: the client CA)"
    )
    tls_server_name: str | None = Field(
        None, description="name peers' certificates are checked against (default: their address)"
    )
    admin_token: SecretStr | None = Field(
        None, description="the operator token the operator API (read sides, shards) asks for"
    )
    admin_token_file: str | None = Field(
        None, description="file holding the operator token (instead of COS_ADMIN_TOKEN)"
    )
    admin_client_names: HeaderList = Field(
        (), description="client certificate names let into the operator API (mutual TLS)"
    )
    admin_api_open: bool = Field(
        False, description="open the operator API to callers without credentials"
    )
    service_name: str = Field(
        "chiefofstate", min_length=1, description="names the service in logs and traces"
    )
    log_level: LogLevel = Field("INFO", alias="LOG_LEVEL", description="DEBUG, INFO, WARN or ERROR")
    log_style: Style = Field(
        LogStyle.STANDARD, alias="LOG_STYLE", description="log format: STANDARD, SIMPLE or JSON"
    )

    @field_validator(
        "write_side_propagated_headers",
        "write_persisted_headers",
        mode="before",
    )
    @classmethod
    def _headers(cls, value: object) -> object:
        return _split_list(value)

    @field_validator(
        "write_side_event_protos", "write_side_state_protos", "admin_client_names", mode="before"
    )
    @classmethod
    def _type_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("deployment_mode", "server_protocol", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("write_side_tls_ca_file")
    @classmethod
    def _readable_pem(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            text = Path(value).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read the CA file: {exc.strerror or exc}") from None
        if b"-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError("not a PEM file of CA certificates (no BEGIN CERTIFICATE)")
        return value

    @property
    def tls(self) -> TlsFiles | None:
        """The gRPC port's TLS files; None without TLS."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return TlsFiles(
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_client_ca_file,
            self.tls_ca_file,
            self.tls_server_name,
        )

    @property
    def channels(self) -> ChannelSettings:
        """What every channel to a handler or a peer shares."""
        keepalive = (
            Keepalive(
                self.grpc_keepalive_time,
                self.grpc_keepalive_timeout,
                self.grpc_keepalive_without_calls,
            )
            if self.grpc_keepalive_enabled
            else None
        )
        return ChannelSettings(self.max_message_bytes, keepalive)

    @property
    def http_served(self) -> bool:
        """Whether this node serves the HTTP/JSON API."""
        return self.http_enabled or self.server_protocol is not ServerProtocol.GRPC

    @property
    def logging(self) -> LogSettings:
        """How every process of the runtime logs."""
        return LogSettings(self.log_level, self.log_style, self.service_name)

    def check_deployment(self) -> None:
        """Settings that are required together; raises :class:`SettingsError`."""
        if self.deployment_mode is DeploymentMode.KUBERNETES:
            for name, value in (
                ("COS_KUBERNETES_APP_LABEL", self.kubernetes_app_label),
                ("POD_IP", self.pod_ip),
            ):
                if not value:
                    raise SettingsError(f"{name}: required when COS_DEPLOYMENT_MODE=kubernetes")
        if self.subscription_port is not None and not self.subscription_enabled:
            raise SettingsError("COS_SUBSCRIPTION_PORT: needs COS_SUBSCRIPTION_ENABLED=true")
        self._check_tls()

    def _check_tls(self) -> None:
        cert, key = self.tls_cert_file, self.tls_key_file
        if (cert is None) != (key is None):
            raise SettingsError("COS_TLS_CERT_FILE and COS_TLS_KEY_FILE: set both or neither")
        if cert is None:
            for name in ("tls_client_ca_file", "tls_ca_file", "tls_server_name"):
                if getattr(self, name) is not None:
                    raise SettingsError(f"{env_name(CosSettings, name)}: needs COS_TLS_CERT_FILE")
            return
        files = {
            "tls_cert_file": PEM_CERTIFICATE,
            "tls_key_file": b"-----BEGIN ",
            "tls_client_ca_file": PEM_CERTIFICATE,
            "tls_ca_file": PEM_CERTIFICATE,
        }
        for name, marker in files.items():
            path = getattr(self, name)
            if path is not None:
                try:
                    read_pem(path, "file", marker)
                except TlsFileError as exc:
                    raise SettingsError(f"{env_name(CosSettings, name)}: {exc}") from None


class _LogEnvironment(BaseSettings):
    """The logging settings alone, for commands that need no other (``cos migrate``)."""

    model_config = SettingsConfigDict(env_prefix="COS_", frozen=True, extra="ignore")

    log_level: LogLevel = Field("INFO", alias="LOG_LEVEL")
    log_style: Style = Field(LogStyle.STANDARD, alias="LOG_STYLE")
    service_name: str = Field("chiefofstate")


def load_log_settings() -> LogSettings:
    """``LOG_LEVEL``, ``LOG_STYLE`` and ``COS_SERVICE_NAME`` alone."""
    try:
        found = _LogEnvironment()
    except ValidationError as exc:
        raise SettingsError(_one_line(_LogEnvironment, exc)) from None
    return LogSettings(found.log_level, found.log_style, found.service_name)


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable of a settings field."""
    info = model.model_fields.get(field)
    if info is not None and info.alias:
        return info.alias
    aliases = {info.alias for info in model.model_fields.values() if info.alias}
    if field in aliases:
        return field
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def _one_line(model: type[BaseSettings], error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = env_name(model, field)
    if first["type"] == "missing":
        return f"{name}: required but not set"
    message = str(first["msg"]).removeprefix("Value error, ")
    info = model.model_fields.get(field)
    if info is not None and "SecretStr" in str(info.annotation):
        return f"{name}: {message}"  # never echo a secret
    return f"{name}: {message} (got {first.get('input')!r})"


def read_secret_file(variable: str, path: str, inline_set: bool) -> SecretStr:
    """The secret in ``path`` (the value of ``<variable>_FILE``), trailing newline
    dropped. Refuses both forms at once: which one should win would be a guess."""
    if inline_set:
        raise SettingsError(f"{variable} and {variable}_FILE are both set: keep one")
    try:
        return SecretStr(Path(path).read_text().rstrip("\r\n"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise SettingsError(f"{variable}_FILE: cannot read {path!r}: {reason}") from None


def load_database_settings() -> DatabaseSettings:
    """Read ``COS_DB_*``; raise :class:`SettingsError` naming the bad variable."""
    try:
        db = DatabaseSettings()
    except ValidationError as exc:
        raise SettingsError(_one_line(DatabaseSettings, exc)) from None
    if db.password_file is None:
        return db
    inline = bool(db.password.get_secret_value())
    password = read_secret_file("COS_DB_PASSWORD", db.password_file, inline)
    return db.model_copy(update={"password": password})


def load_settings(environ: Mapping[str, str] | None = None) -> CosSettings:
    """Read the whole configuration; raise :class:`SettingsError` naming the bad variable
    (or the read side and its setting)."""
    db = load_database_settings()
    try:
        settings = CosSettings(db=db)
    except ValidationError as exc:
        raise SettingsError(_one_line(CosSettings, exc)) from None
    settings.check_deployment()
    if settings.ray_auth_token_file is not None:
        token = read_secret_file(
            "COS_RAY_AUTH_TOKEN", settings.ray_auth_token_file, settings.ray_auth_token is not None
        )
        settings = settings.model_copy(update={"ray_auth_token": token})
    if settings.admin_token_file is not None:
        token = read_secret_file(
            "COS_ADMIN_TOKEN", settings.admin_token_file, settings.admin_token is not None
        )
        settings = settings.model_copy(update={"admin_token": token})
    try:
        telemetry = TelemetryConfig.from_environment(os.environ if environ is None else environ)
    except TelemetryConfigError as exc:
        raise SettingsError(str(exc)) from None
    settings = settings.model_copy(update={"telemetry": telemetry})
    if not settings.read_side_enabled:
        return settings
    try:
        read_sides = load_read_sides(
            settings.read_side_config, os.environ if environ is None else environ
        )
    except ReadSideConfigError as exc:
        raise SettingsError(str(exc)) from None
    return settings.model_copy(update={"read_sides": tuple(read_sides)})
