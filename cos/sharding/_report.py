"""Rows about shards and hosts: the table as operators see it, what a host says of its own
shards, and each host's health (pure: the CLIs import it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cos.storage import Heartbeat


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


@dataclass(frozen=True)
class HostHealth:
    """One host as operators see it: its address, its shards, the entities it holds in
    memory (None: unknown, it did not answer) and its last heartbeat (None: no row)."""

    host_id: str
    address: str
    shards: tuple[int, ...]
    active_entities: int | None
    heartbeat: Heartbeat | None


def host_health(report: Sequence[ShardReport], heartbeats: Sequence[Heartbeat]) -> list[HostHealth]:
    """Every host that owns a shard in ``report`` or has a heartbeat, by host id."""
    owned: dict[str, list[ShardReport]] = {}
    for row in report:
        owned.setdefault(row.host_id, []).append(row)
    beats = {beat.host_id: beat for beat in heartbeats}
    return [_health(h, owned.get(h, []), beats.get(h)) for h in sorted(owned.keys() | beats)]


def _health(host_id: str, rows: Sequence[ShardReport], beat: Heartbeat | None) -> HostHealth:
    known = [row.address for row in rows if row.address]
    address = known[0] if known else (beat.address if beat is not None else "")
    counts = [row.active_entities for row in rows]
    active = None if None in counts else sum(c for c in counts if c is not None)
    return HostHealth(host_id, address, tuple(sorted(r.shard for r in rows)), active, beat)
