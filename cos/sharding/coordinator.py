"""Coordinator: the shard -> host table and its epochs.

A plain class; cos.sharding.deploy makes it a named Ray actor. Placement is a
``reconcile()`` step over the registered hosts, each hand-out guarded so one
failing host does not stop the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cos.sharding.placement import plan_assignment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ownership:
    """One row of the shard table."""

    shard: int
    host_id: str
    epoch: int


class Coordinator:
    """Keeps every shard owned by exactly one registered host."""

    def __init__(self, num_shards: int) -> None:
        self._num_shards = num_shards
        self._hosts: dict[str, Any] = {}
        self._table: dict[int, Ownership] = {}

    async def register_host(self, host_id: str, handle: Any) -> list[int]:
        """Add a host and hand it its share of shards; returns the shards it got."""
        self._hosts[host_id] = handle
        await self.reconcile()
        return sorted(s for s, o in self._table.items() if o.host_id == host_id)

    async def reconcile(self) -> None:
        """Bring the table to the planned assignment."""
        current = {shard: o.host_id for shard, o in self._table.items()}
        plan = plan_assignment(self._num_shards, list(self._hosts), current)
        wanted: dict[str, list[int]] = {}
        for shard, host_id in plan.items():
            if current.get(shard) != host_id:
                wanted.setdefault(host_id, []).append(shard)
        for host_id, shards in wanted.items():
            try:
                epochs = await _call(self._hosts[host_id].assign, sorted(shards))
            except Exception:
                log.exception("assigning shards %s to host %s failed", shards, host_id)
                continue
            for shard, epoch in epochs.items():
                self._table[shard] = Ownership(shard, host_id, epoch)

    async def table(self) -> list[Ownership]:
        """The shard table, by shard number."""
        return [self._table[s] for s in sorted(self._table)]


async def _call(method: Any, *args: Any) -> Any:
    # A Ray actor handle's methods are called with .remote(); plain objects directly.
    remote = getattr(method, "remote", None)
    if remote is not None:
        return await remote(*args)
    return await method(*args)
