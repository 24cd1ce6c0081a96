"""The cluster's settings: how many shards, how hosts name and find each other, and how
long a host may be silent or a command wait for its shard to move."""

from __future__ import annotations

from pydantic import Field

from cos.config import Part


class ClusterSettings(Part):
    """What every node of one runtime agrees on, and how it treats the others."""

    num_shards: int = Field(
        16, gt=0, le=4096, description="number of shards; fixed for a journal once written"
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
