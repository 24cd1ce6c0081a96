"""Runtime configuration, read once from the ``COS_*`` environment at start-up.

Names follow Chief of State where it has one. :func:`load_settings` is the
only place that reads the environment; everything else receives a frozen
settings object through its constructor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cos.readside.config import ReadSideConfig, ReadSideConfigError, load_read_sides

HeaderList = Annotated[tuple[str, ...], NoDecode]


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip().lower() for item in value.split(",") if item.strip())
    return value


class DatabaseSettings(BaseSettings):
    """Where the journal lives (``COS_DB_*``). No host set means an embedded server."""

    model_config = SettingsConfigDict(env_prefix="COS_DB_", frozen=True, extra="ignore")

    host: str | None = Field(None, description="PostgreSQL host; unset = embedded server")
    port: int = Field(5432, gt=0, lt=65536, description="PostgreSQL port")
    user: str = Field("postgres", description="PostgreSQL user")
    password: SecretStr = Field(SecretStr(""), description="PostgreSQL password")
    name: str = Field("postgres", description="PostgreSQL database name")
    schema_: str = Field(
        "public",
        alias="COS_DB_SCHEMA",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="schema holding the runtime's tables",
    )
    pool_max_size: int = Field(20, ge=2, description="connections per host process")
    embedded_dir: str = Field(
        ".cos-data/postgres",
        alias="COS_EMBEDDED_DB_DIR",
        description="data folder of the embedded PostgreSQL (used when COS_DB_HOST is unset)",
    )

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
        5.0, gt=0, description="deadline of each write handler call, in seconds (as in CoS)"
    )
    passivation_idle_seconds: float = Field(
        120.0, gt=0, description="an entity idle this long leaves the cache"
    )
    entity_cache_size: int = Field(
        10_000, gt=0, description="entities kept in memory per shard host"
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
        (), exclude=True, description="(from COS_READ_SIDE_CONFIG and COS_READ_SIDE_CONFIG__*)"
    )
    cluster_name: str = Field(
        "cos",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="names this runtime's Ray actors; runtimes sharing a Ray cluster differ",
    )
    advertise_address: str | None = Field(
        None, description="host other nodes use to reach this node's gRPC port (default: node IP)"
    )
    host_failure_timeout_seconds: float = Field(
        5.0, gt=0, description="a shard host silent this long is declared dead"
    )
    forward_retry_seconds: float = Field(
        5.0, ge=0, description="how long a forwarded command is retried while its shard moves"
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join; unset = start a local Ray"
    )
    ray_temp_dir: str | None = Field(
        None,
        description="--temp-dir of the Ray node to join, when several share one machine",
    )
    log_level: str = Field("INFO", alias="LOG_LEVEL", description="log level")

    @field_validator(
        "write_side_propagated_headers",
        "write_persisted_headers",
        mode="before",
    )
    @classmethod
    def _headers(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("write_side_event_protos", "write_side_state_protos", mode="before")
    @classmethod
    def _type_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        allowed = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        if isinstance(value, str) and value.upper() in allowed:
            return value.upper()
        raise ValueError(f"must be one of {', '.join(sorted(allowed))}")


def _env_name(model: type[BaseSettings], field: str) -> str:
    aliases = {info.alias for info in model.model_fields.values() if info.alias}
    if field in aliases:
        return field
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def _one_line(model: type[BaseSettings], error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = _env_name(model, field)
    if first["type"] == "missing":
        return f"{name}: required but not set"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{name}: {message} (got {first.get('input')!r})"


def load_database_settings() -> DatabaseSettings:
    """Read ``COS_DB_*``; raise :class:`SettingsError` naming the bad variable."""
    try:
        return DatabaseSettings()
    except ValidationError as exc:
        raise SettingsError(_one_line(DatabaseSettings, exc)) from None


def load_settings(environ: Mapping[str, str] | None = None) -> CosSettings:
    """Read the whole configuration; raise :class:`SettingsError` naming the bad variable
    (or the read side and its setting)."""
    db = load_database_settings()
    try:
        settings = CosSettings(db=db)
    except ValidationError as exc:
        raise SettingsError(_one_line(CosSettings, exc)) from None
    if not settings.read_side_enabled:
        return settings
    try:
        read_sides = load_read_sides(
            settings.read_side_config, os.environ if environ is None else environ
        )
    except ReadSideConfigError as exc:
        raise SettingsError(str(exc)) from None
    return settings.model_copy(update={"read_sides": tuple(read_sides)})
