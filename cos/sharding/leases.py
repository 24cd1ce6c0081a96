"""Shard leases, the port: who owns each shard, and the epoch that fences its writes.

A lease is taken with a higher epoch than any before; every journal write of the shard
carries the epoch it was taken with and is refused once another owner took the lease
(``JournalStore.append`` raises ``FencedError``). Leases and the journal therefore live
in the same database: the epoch check and the write are one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Lease:
    """The last owner of a shard and the epoch it took the lease with."""

    shard: int
    owner: str
    epoch: int


@dataclass(frozen=True)
class Standing:
    """What the database says of a runtime's hosts: who renewed its heartbeat within the
    failure timeout (host id -> address), and every shard lease."""

    live: Mapping[str, str]
    leases: Sequence[Lease]


class LeaseStore(Protocol):
    """Durable shard leases."""

    async def acquire_shards(self, shards: Sequence[int], owner: str) -> dict[int, int]:
        """Take the lease of each shard for ``owner``; returns each shard's new epoch."""
        ...

    async def leases(self) -> list[Lease]:
        """Every shard lease."""
        ...

    async def heartbeat(self, host_id: str, address: str) -> None:
        """Renew the host's heartbeat (the database's clock)."""
        ...

    async def forget_host(self, host_id: str) -> None:
        """Drop the host's heartbeat: it has stopped."""
        ...

    async def standing(self, host_prefix: str, timeout: float) -> Standing:
        """The hosts whose name starts with ``host_prefix`` and whose heartbeat is at most
        ``timeout`` seconds old, and every shard lease."""
        ...

    async def take_over(self, expected: Mapping[int, int], owner: str) -> dict[int, int]:
        """Take each shard's lease for ``owner`` if it still has the epoch ``expected``
        (nobody took it since it was read); returns the new epoch of each one taken."""
        ...
