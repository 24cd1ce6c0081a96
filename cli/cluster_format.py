"""What ``cos shards``, ``cos-cli cluster shards`` and ``cos-cli cluster health`` print
(pure formatting)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timezone

from rich.table import Table

from cos.sharding import HostHealth, ShardReport
from cos.storage import Heartbeat
from cos.v1 import cluster_pb2


def from_response(response: cluster_pb2.GetShardsResponse) -> list[ShardReport]:
    """The rows of a ``GetShardsResponse``."""
    return [
        ShardReport(
            row.shard,
            row.host_id,
            row.address,
            row.epoch,
            row.active_entities if row.HasField("active_entities") else None,
        )
        for row in response.shards
    ]


def shards_table(rows: Sequence[ShardReport]) -> Table:
    """One row per shard: owner host, its address, the lease epoch and entities in memory."""
    hosts = {row.host_id for row in rows if row.address}
    table = Table(title=f"{len(rows)} shards on {len(hosts)} hosts")
    for column in ("shard", "host", "address", "epoch", "active entities"):
        table.add_column(column, justify="right" if column != "host" else "left")
    for row in rows:
        table.add_row(
            str(row.shard),
            row.host_id,
            row.address or "(not live)",
            str(row.epoch),
            "?" if row.active_entities is None else str(row.active_entities),
        )
    return table


def health_from_response(response: cluster_pb2.GetClusterHealthResponse) -> list[HostHealth]:
    """The rows of a ``GetClusterHealthResponse``."""
    return [_host_health(host) for host in response.hosts]


def _host_health(host: cluster_pb2.HostHealth) -> HostHealth:
    beat = None
    if host.HasField("heartbeat_time"):
        at = host.heartbeat_time.ToDatetime(tzinfo=timezone.utc)
        beat = Heartbeat(host.host_id, host.address, at, host.heartbeat_age_seconds)
    active = host.active_entities if host.HasField("active_entities") else None
    return HostHealth(host.host_id, host.address, tuple(host.shards), active, beat)


def shard_ranges(shards: Sequence[int]) -> str:
    """``0-3,7``: the shard numbers, consecutive ones as a range; "-" for none."""
    spans: list[list[int]] = []
    for shard in sorted(shards):
        if spans and shard == spans[-1][1] + 1:
            spans[-1][1] = shard
        else:
            spans.append([shard, shard])
    words = [str(a) if a == b else f"{a}-{b}" for a, b in spans]
    return ",".join(words) or "-"


def health_table(hosts: Sequence[HostHealth]) -> Table:
    """One row per host: address, shard count and numbers, entities in memory, and how
    long ago (by the database's clock) and when it renewed its heartbeat."""
    total = sum(len(host.shards) for host in hosts)
    table = Table(title=f"{len(hosts)} hosts, {total} shards")
    # Ids and addresses are folded, never cut short, on a narrow terminal.
    table.add_column("host", overflow="fold")
    table.add_column("address", overflow="fold")
    for column in ("shards", "numbers", "entities", "heartbeat"):
        table.add_column(column, justify="right")
    table.add_column("heartbeat at", no_wrap=True)
    for host in hosts:
        beat = host.heartbeat
        table.add_row(
            host.host_id,
            host.address or "(unknown)",
            str(len(host.shards)),
            shard_ranges(host.shards),
            "?" if host.active_entities is None else str(host.active_entities),
            "none" if beat is None else f"{beat.age_seconds:.1f} s ago",
            "-"
            if beat is None
            else beat.at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
        )
    return table
