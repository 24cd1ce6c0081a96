"""Reading an entity's history from the journal: the rules of ``GetEvents`` and
``GetStateAt``, over a :class:`HistoryStore`.

Every stored event carries the state it resulted in, so the state at a revision is one
indexed row, that event's, whatever the snapshots: no replay. Events marked deleted
(``COS_JOURNAL_LOGICAL_DELETION`` marks those older than the oldest retained snapshot)
are refused. Nothing here needs the entity's shard: any node reads the journal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from chief_of_state.v1 import persistence_pb2
from cos.errors import (
    HistoryDeletedError,
    InvalidRequestError,
    NotFoundError,
    OutOfRangeError,
    shorten,
)
from cos.storage import HistoryStore
from cos.writeside import EntityState, check_entity_id, state_from_event

PAGE = 500  # events read per query while a GetEvents stream goes on


class HistoryReader:
    """Answers history requests from a :class:`HistoryStore`."""

    def __init__(self, store: HistoryStore, page: int = PAGE) -> None:
        self._store = store
        self._page = page

    async def events(
        self, entity_id: str, from_revision: int, to_revision: int, limit: int
    ) -> AsyncIterator[persistence_pb2.EventWrapper]:
        """The entity's events ``from_revision..to_revision`` (0: the first, the newest),
        at most ``limit`` (0: all); refuses a range that starts in deleted history."""
        check_entity_id(entity_id)
        first = max(from_revision, 1)
        if to_revision and to_revision < first:
            raise InvalidRequestError(f"to_revision {to_revision} is before from_revision {first}")
        newest = await self._newest(entity_id)
        if first > newest:
            raise OutOfRangeError(
                f"entity {shorten(entity_id)} is at revision {newest}:"
                f" from_revision {first} is past it"
            )
        last = min(to_revision or newest, newest)
        left = limit or last - first + 1
        while first <= last and left > 0:
            rows = await self._store.events(entity_id, first, last, min(self._page, left))
            if not rows:
                return
            for row in rows:
                if row.deleted:
                    raise await self._deleted(entity_id, row.revision)
                yield persistence_pb2.EventWrapper.FromString(row.payload)
            first, left = rows[-1].revision + 1, left - len(rows)

    async def state_at(self, entity_id: str, revision: int) -> EntityState:
        """The entity's state and meta right after ``revision``."""
        check_entity_id(entity_id)
        if revision < 1:
            raise InvalidRequestError("revision must be 1 or more (0 is before the first event)")
        rows = await self._store.events(entity_id, revision, revision, 1)
        if rows and not rows[0].deleted:
            return state_from_event(persistence_pb2.EventWrapper.FromString(rows[0].payload))
        if rows:
            raise await self._deleted(entity_id, revision)
        newest = await self._newest(entity_id)
        raise OutOfRangeError(
            f"entity {shorten(entity_id)} is at revision {newest}: revision {revision} is past it"
        )

    async def _newest(self, entity_id: str) -> int:
        newest = await self._store.newest_revision(entity_id)
        if newest == 0:
            raise NotFoundError(f"entity {shorten(entity_id)} not found")
        return newest

    async def _deleted(self, entity_id: str, revision: int) -> HistoryDeletedError:
        kept = await self._store.first_kept_revision(entity_id)
        since = "no event is kept" if kept is None else f"events are kept from revision {kept}"
        return HistoryDeletedError(
            f"revision {revision} of entity {shorten(entity_id)} was deleted after a snapshot"
            f" (COS_JOURNAL_LOGICAL_DELETION): {since}"
        )
