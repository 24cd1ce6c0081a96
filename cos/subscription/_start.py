"""What a subscriber asked for, checked: its shards, where it starts in each, and the
entity it follows. Pure: no asyncio, no database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cos.errors import InvalidRequestError
from cos.storage import StoredEvent


@dataclass(frozen=True)
class Subscription:
    """The events of ``shards`` after ``positions`` (one per shard); of ``entity_id`` only,
    with a revision above ``after_revision``, when it is set."""

    positions: Mapping[int, int]
    entity_id: str | None = None
    after_revision: int = 0

    @property
    def shards(self) -> Sequence[int]:
        return sorted(self.positions)

    def matches(self, event: StoredEvent) -> bool:
        """True for an event this subscriber receives."""
        if self.entity_id is None:
            return True
        return event.entity_id == self.entity_id and event.revision > self.after_revision


def check_cursor(
    pairs: Sequence[tuple[int, int]], shard_count: int, num_shards: int, shards: Sequence[int]
) -> dict[int, int]:
    """The positions of a cursor's ``(shard, position)`` pairs, which must cover exactly
    ``shards`` of a runtime with ``num_shards`` shards; InvalidRequestError otherwise."""
    if shard_count != num_shards:
        raise InvalidRequestError(
            f"the cursor is for {shard_count} shards; this runtime has {num_shards}"
            " (COS_NUM_SHARDS): subscribe from the beginning, from now or after a revision"
        )
    positions: dict[int, int] = {}
    for shard, position in pairs:
        if shard >= num_shards:
            raise InvalidRequestError(
                f"malformed cursor: shard {shard} does not exist (shards 0 to {num_shards - 1})"
            )
        if shard in positions:
            raise InvalidRequestError(f"malformed cursor: shard {shard} appears twice")
        positions[shard] = position
    if extra := sorted(set(positions) - set(shards)):
        raise InvalidRequestError(
            f"malformed cursor: shards {extra} are not those of this subscription {list(shards)}"
        )
    if missing := sorted(set(shards) - set(positions)):
        raise InvalidRequestError(f"malformed cursor: it lacks shards {missing}")
    return positions
