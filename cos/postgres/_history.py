"""An entity's history in PostgreSQL (:class:`cos.history.reader.HistoryStore`): indexed
reads of ``cos_journal`` by ``(entity_id, revision)``."""

from __future__ import annotations

from cos.postgres._datastore import PostgresDatastore
from cos.storage import HistoryEvent

_EVENTS = """
SELECT revision, deleted, payload FROM cos_journal
WHERE entity_id = $1 AND revision BETWEEN $2 AND $3 ORDER BY revision LIMIT $4
"""
_NEWEST = "SELECT max(revision) FROM cos_journal WHERE entity_id = $1"
_FIRST_KEPT = "SELECT min(revision) FROM cos_journal WHERE entity_id = $1 AND NOT deleted"


class PostgresHistoryStore:
    """Reads of the journal of a schema migrated by alembic."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore
        self._pool = datastore.pool

    async def events(self, entity_id: str, first: int, last: int, limit: int) -> list[HistoryEvent]:
        """Events ``first..last`` of the entity, in revision order, at most ``limit``."""
        async with self._datastore.errors(f"cannot read the history of {entity_id!r}"):
            rows = await self._pool.fetch(_EVENTS, entity_id, first, last, limit)
        return [
            HistoryEvent(int(r["revision"]), bool(r["deleted"]), bytes(r["payload"])) for r in rows
        ]

    async def newest_revision(self, entity_id: str) -> int:
        """The newest revision in the journal; 0 for none."""
        async with self._datastore.errors(f"cannot read the history of {entity_id!r}"):
            newest = await self._pool.fetchval(_NEWEST, entity_id)
        return 0 if newest is None else int(newest)

    async def first_kept_revision(self, entity_id: str) -> int | None:
        """The oldest revision not marked deleted."""
        async with self._datastore.errors(f"cannot read the history of {entity_id!r}"):
            kept = await self._pool.fetchval(_FIRST_KEPT, entity_id)
        return None if kept is None else int(kept)
