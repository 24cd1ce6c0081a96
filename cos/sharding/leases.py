"""Shard leases, the port: who owns each shard, and the epoch that fences its writes.

A lease is taken with a higher epoch than any before; every journal write of the shard
carries the epoch it was taken with and is refused once another owner took the lease
(``JournalStore.append`` raises ``FencedError``). Leases and the journal therefore live
in the same database: the epoch check and the write are one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Lease:
    """The last owner of a shard and the epoch it took the lease with."""

    shard: int
    owner: str
    epoch: int


class LeaseStore(Protocol):
    """Durable shard leases."""

    async def acquire_shards(self, shards: Sequence[int], owner: str) -> dict[int, int]:
        """Take the lease of each shard for ``owner``; returns each shard's new epoch."""
        ...

    async def leases(self) -> list[Lease]:
        """Every shard lease."""
        ...
