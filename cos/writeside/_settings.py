"""The write side's settings: how a shard runs its commands, and where its handler is."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from cos.config import HeaderList, NameList, Part


class ShardSettings(Part):
    """How every shard runs its entities' commands."""

    snapshot_frequency: int = Field(100, gt=0, description="events between snapshots")
    disable_snapshot: bool = Field(False, description="never write snapshots")
    journal_max_batch: int = Field(
        500, gt=0, description="most commands flushed in one group-commit transaction"
    )
    entity_pipeline_depth: int = Field(
        16,
        gt=0,
        description="commands of one entity run ahead of their events' commit (1: none)",
    )
    entity_cache_size: int = Field(
        10_000, gt=0, description="entities kept in memory per node, divided among its shards"
    )
    passivation_idle_seconds: float = Field(
        120.0, gt=0, description="an entity idle this long leaves the cache"
    )
    command_handler_timeout: float = Field(
        5.0,
        gt=0,
        description="time the write handler gets for all calls of one command, in seconds",
    )
    persisted_headers: HeaderList = Field(
        (),
        alias="COS_WRITE_PERSISTED_HEADERS",
        description="comma-separated request headers stored in each event's meta",
    )
    proto_validation: bool = Field(
        False,
        alias="COS_WRITE_SIDE_PROTO_VALIDATION",
        description="reject events and states whose type is not listed",
    )
    event_protos: NameList = Field(
        (),
        alias="COS_WRITE_SIDE_EVENT_PROTOS",
        description="comma-separated event type names allowed when validating",
    )
    state_protos: NameList = Field(
        (),
        alias="COS_WRITE_SIDE_STATE_PROTOS",
        description="comma-separated state type names allowed when validating",
    )

    @property
    def snapshot_every(self) -> int | None:
        """Events between snapshots; None when snapshots are off."""
        return None if self.disable_snapshot else self.snapshot_frequency


class HandlerSettings(Part):
    """Where the application's write handler listens (``COS_WRITE_SIDE_*``)."""

    env_prefix = "COS_WRITE_SIDE_"

    host: str = Field(description="host of the write handler")
    port: int = Field(gt=0, lt=65536, description="port of the write handler")
    use_tls: bool = Field(False, description="TLS to the write handler")
    tls_ca_file: str | None = Field(
        None, description="PEM CA bundle for the write handler (default: system roots)"
    )
    propagated_headers: HeaderList = Field(
        (), description="comma-separated request headers forwarded to the write handler"
    )

    @property
    def target(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @field_validator("tls_ca_file")
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
