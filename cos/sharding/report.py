"""Rows about shards: the table as operators see it, and what a host says of its own
shards (no dependencies: the CLIs import it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardReport:
    """One shard: its owner, where the owner is reached, its epoch, entities in memory."""

    shard: int
    host_id: str
    address: str  # empty while the owner is not a live host
    epoch: int
    active_entities: int | None  # None: the owner did not answer in time


@dataclass(frozen=True)
class ShardInfo:
    """What a host reports about one of its shards."""

    shard: int
    epoch: int
    active_entities: int
