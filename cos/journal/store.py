"""The journal, the port: what a shard and its read sides need from durable storage.

Every implementation is held to the same tests (tests/integration/test_journal_contract.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol


@dataclass(frozen=True)
class NewEvent:
    """One event to append: ``payload`` is the serialized ``EventWrapper``."""

    revision: int
    event_type: str
    created_at: datetime
    payload: bytes


@dataclass(frozen=True)
class NewSnapshot:
    """A snapshot to store with an append: ``payload`` is the serialized ``StateWrapper``."""

    revision: int
    payload: bytes


@dataclass(frozen=True)
class IdempotencyRecord:
    """A command applied under an ``x-cos-idempotency-key``: the hash of the command and
    the revision its reply showed (the entity's revision after it), so a retry can be
    answered from the journal without running the command again."""

    key: str
    command_hash: bytes
    revision: int


@dataclass(frozen=True)
class EntityAppend:
    """The events one command produced for one entity, written atomically."""

    entity_id: str
    events: Sequence[NewEvent]
    snapshot: NewSnapshot | None = None
    # The W3C ``traceparent`` of the command that wrote them, stored with each event so
    # read-side deliveries can link to the command's trace.
    trace_context: str | None = None
    # The command's idempotency key, stored in the same transaction as its events.
    idempotency: IdempotencyRecord | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as it sits in the journal, with its shard position."""

    shard: int
    position: int
    entity_id: str
    revision: int
    event_type: str
    created_at: datetime
    payload: bytes
    trace_context: str | None = None


@dataclass(frozen=True)
class Recovered:
    """The newest record of an entity: its last event or its last snapshot."""

    revision: int
    kind: Literal["event", "snapshot"]
    payload: bytes


class JournalStore(Protocol):
    """Durable storage of events and snapshots, fenced by the shard leases
    (:mod:`cos.sharding.leases`) of the same database."""

    async def append(self, shard: int, epoch: int, batch: Sequence[EntityAppend]) -> int:
        """Write every append of ``batch`` in one transaction, or none of them; returns
        the position of the batch's last event (its events take the positions before it,
        in batch order), 0 for a batch without events.

        Raises FencedError when ``epoch`` is no longer the shard's epoch and
        ConflictError when an ``(entity_id, revision)`` already exists, or when an
        append's idempotency key is already recorded for its entity and not expired.
        """
        ...

    async def remember(
        self, shard: int, epoch: int, entity_id: str, record: IdempotencyRecord
    ) -> None:
        """Record the idempotency key of a command that wrote no event, fenced like an
        append. Raises FencedError and ConflictError as :meth:`append` does."""
        ...

    async def find_idempotency(self, entity_id: str, key: str) -> IdempotencyRecord | None:
        """The record of ``key`` for the entity, or None when there is none or it is older
        than the store's idempotency window."""
        ...

    async def event_at(self, entity_id: str, revision: int) -> bytes | None:
        """The ``EventWrapper`` bytes of the entity's event at ``revision`` (compacted ones
        included), or None."""
        ...

    async def forget_expired_keys(self, limit: int) -> int:
        """Delete at most ``limit`` idempotency records older than the window; returns how
        many went."""
        ...

    async def latest(self, entity_id: str) -> Recovered | None:
        """The newest event or snapshot of an entity, or None for a new entity."""
        ...

    async def read_shard(self, shard: int, after: int, limit: int) -> list[StoredEvent]:
        """Events of a shard with position greater than ``after``, in position order."""
        ...

    async def last_positions(self, shards: Sequence[int]) -> dict[int, int]:
        """The position of the last committed event of each shard (0 for none yet)."""
        ...
