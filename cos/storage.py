"""The storage ports: everything the runtime needs of durable storage, in one module.

Each port is a protocol with the frozen records it takes and returns. A backend implements
all of them (``cos.postgres`` does, for PostgreSQL) and is held to the contract suites in
``tests/integration/test_*_contract.py``, so a second backend is one new package. Storage
failures are the runtime's own errors (``cos.errors``): ``ConflictError``, ``FencedError``,
``JournalUnavailableError``, ``JournalRejectedError``; nothing here knows a driver.

    JournalSettings what every journal keeps, and for how long
    JournalReader   the events of a shard or an entity by position (read sides, subscriptions)
    JournalStore    appends fenced by the shard's lease epoch, recovery, idempotency keys
    LeaseStore      who owns each shard, with which epoch; host heartbeats
    OffsetStore     how far each read side got in each shard, paused flags, last failures
    HistoryStore    an entity's stored events by revision
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import Field

from cos.config import Part

# -- the journal -----------------------------------------------------------------------


class JournalSettings(Part):
    """What every journal keeps, and for how long."""

    num_snapshots_to_retain: int = Field(2, gt=0, description="snapshots kept per entity")
    logical_deletion: bool = Field(
        False,
        alias="COS_JOURNAL_LOGICAL_DELETION",
        description="mark events older than the oldest kept snapshot as deleted",
    )
    idempotency_window_seconds: float = Field(
        86400.0,
        gt=0,
        description="how long a command's x-cos-idempotency-key is remembered, in seconds",
    )


DEFAULT_JOURNAL = JournalSettings()


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


class JournalReader(Protocol):
    """Reads of the journal by shard position, which are gap-free and in commit order."""

    async def read_shard(self, shard: int, after: int, limit: int) -> list[StoredEvent]:
        """Events of a shard with position greater than ``after``, in position order."""
        ...

    async def read_entity(
        self, shard: int, entity_id: str, *, after: int, after_revision: int, limit: int
    ) -> list[StoredEvent]:
        """Events of ``entity_id`` (in ``shard``) after position ``after`` and revision
        ``after_revision``, in position order."""
        ...

    async def last_positions(self, shards: Sequence[int]) -> dict[int, int]:
        """The position of the last committed event of each shard (0 for none yet)."""
        ...


class JournalStore(JournalReader, Protocol):
    """Durable storage of events and snapshots, fenced by the shard leases
    (:class:`LeaseStore`) of the same database."""

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

    async def announce(self, shards: Sequence[int]) -> None:
        """Tell every node that ``shards`` have new committed events (their subscriptions
        read them), off the command path: sent after the commits it announces."""
        ...


# -- shard leases and host heartbeats ------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    """A host's heartbeat row: where it said it is reached, when it last renewed the row,
    and how long ago that was by the database's clock."""

    host_id: str
    address: str
    at: datetime
    age_seconds: float


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
    """Durable shard leases. A lease is taken with a higher epoch than any before; every
    journal write of the shard carries the epoch it was taken with and is refused once
    another owner took the lease (``JournalStore.append`` raises ``FencedError``). So
    leases and the journal live in the same database: the epoch check and the write are
    one transaction."""

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

    async def heartbeats(self, host_prefix: str) -> list[Heartbeat]:
        """The heartbeat rows of a runtime's hosts (``host_prefix``), by host id."""
        ...


# -- read-side offsets ----------------------------------------------------------------


@dataclass(frozen=True)
class Offset:
    """Where a read side stands in one shard, and why it stopped there, if it did."""

    read_side_id: str
    shard: int
    position: int
    paused: bool
    stopped_reason: str | None = None


@dataclass(frozen=True)
class LastError:
    """The last failed delivery of a read side in one shard, and when it was recorded."""

    text: str
    at: datetime


@dataclass(frozen=True)
class ShardStatus:
    """A read side in one shard against the journal, read at one instant: its offset, the
    shard's last journal position, how old the oldest undelivered event is (0 when caught
    up), and its last delivery failure (kept after delivery recovers)."""

    offset: Offset
    journal_position: int
    lag_seconds: float = 0.0
    last_error: LastError | None = None


class OffsetStore(Protocol):
    """Offsets and paused flags per (read side, shard).

    Operator changes (``set_paused``, ``restart``, ``skip``) clear a stop reason and
    tell the runners of the read side on every host, through the store's own channel.
    """

    async def prepare(self, read_side_id: str, shards: Sequence[int], start_paused: bool) -> None:
        """Create missing rows; ``start_paused`` (autoStart=false) pauses every shard."""
        ...

    async def get(self, read_side_id: str, shard: int) -> Offset:
        """The offset of one shard (position 0, not paused, when it has no row yet)."""
        ...

    async def status(self, read_side_id: str, shards: Sequence[int]) -> list[ShardStatus]:
        """Where the read side stands against the journal in ``shards``, in that order."""
        ...

    async def list(self, read_side_id: str, shards: Sequence[int]) -> list[Offset]:
        """The offsets of ``shards``, in that order."""
        ...

    async def advance(self, read_side_id: str, shard: int, expected: int, position: int) -> bool:
        """Move the offset from ``expected`` to ``position``; False when it was changed
        meanwhile (then the runner reads it again instead of overwriting)."""
        ...

    async def set_stopped(self, read_side_id: str, shard: int, reason: str | None) -> None:
        """Record why a failure policy stopped the runner of ``shard`` (None: it runs)."""
        ...

    async def record_failure(self, read_side_id: str, shard: int, text: str) -> None:
        """Keep ``text`` as the last delivery failure of ``shard``, timed by the store. Only
        a later failure replaces it: neither a success nor an operator action clears it."""
        ...

    async def set_paused(self, read_side_id: str, shards: Sequence[int], paused: bool) -> None:
        """Pause or resume ``shards``."""
        ...

    async def restart(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Clear the offsets of ``shards``: delivery starts again from the first event."""
        ...

    async def skip(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Move past the event at the current offset of each shard, where there is one."""
        ...


# -- an entity's history -------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEvent:
    """A stored event of the entity: ``payload`` is its serialized ``EventWrapper``."""

    revision: int
    deleted: bool
    payload: bytes


class HistoryStore(Protocol):
    """What the history reads from durable storage (``cos.postgres.PostgresHistoryStore``)."""

    async def events(self, entity_id: str, first: int, last: int, limit: int) -> list[HistoryEvent]:
        """The entity's events with revisions ``first..last``, in revision order, at most
        ``limit`` of them; deleted ones included (marked)."""
        ...

    async def newest_revision(self, entity_id: str) -> int:
        """The entity's newest stored revision; 0 for an entity without events."""
        ...

    async def first_kept_revision(self, entity_id: str) -> int | None:
        """The oldest revision whose event is not deleted; None when all are."""
        ...
