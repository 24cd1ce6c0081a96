"""Read-side offsets in PostgreSQL: position and paused flag per (read side, shard).

The only read-side module that imports asyncpg. Operator changes also send a
``NOTIFY`` on :data:`CONTROL_CHANNEL` in the same transaction, so the host
running the shard's runner hears of them at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from cos.errors import JournalUnavailableError

CONTROL_CHANNEL = "cos_read_side_control"

_TRANSIENT = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


@dataclass(frozen=True)
class Offset:
    """Where a read side stands in one shard."""

    read_side_id: str
    shard: int
    position: int
    paused: bool


class PostgresOffsetStore:
    """Offsets and paused flags; every change is durable when the call returns."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def prepare(self, read_side_id: str, shards: Sequence[int], start_paused: bool) -> None:
        """Create missing rows. ``start_paused`` (autoStart=false) pauses every shard."""
        try:
            await self._pool.execute(
                """
                INSERT INTO cos_read_side_offsets (read_side_id, shard, paused)
                SELECT $1, shard, $3 FROM unnest($2::int[]) AS shard
                ON CONFLICT (read_side_id, shard) DO UPDATE
                SET paused = cos_read_side_offsets.paused OR EXCLUDED.paused
                """,
                read_side_id,
                list(shards),
                start_paused,
            )
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot prepare read side offsets: {exc}") from exc

    async def get(self, read_side_id: str, shard: int) -> Offset:
        """The offset of one shard (position 0, not paused, when it has no row yet)."""
        rows = await self.list(read_side_id, [shard])
        return rows[0]

    async def list(self, read_side_id: str, shards: Sequence[int]) -> list[Offset]:
        """The offsets of ``shards``, in that order."""
        try:
            rows = await self._pool.fetch(
                "SELECT shard, position, paused FROM cos_read_side_offsets "
                "WHERE read_side_id = $1 AND shard = ANY($2::int[])",
                read_side_id,
                list(shards),
            )
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot read read side offsets: {exc}") from exc
        found = {int(r["shard"]): (int(r["position"]), bool(r["paused"])) for r in rows}
        return [Offset(read_side_id, s, *found.get(s, (0, False))) for s in shards]

    async def advance(self, read_side_id: str, shard: int, expected: int, position: int) -> bool:
        """Move the offset from ``expected`` to ``position``; False when an operator
        changed it meanwhile (then the runner re-reads instead of overwriting)."""
        try:
            status = await self._pool.execute(
                "UPDATE cos_read_side_offsets SET position = $4, updated_at = now() "
                "WHERE read_side_id = $1 AND shard = $2 AND position = $3",
                read_side_id,
                shard,
                expected,
                position,
            )
        except _TRANSIENT as exc:
            raise JournalUnavailableError(f"cannot store a read side offset: {exc}") from exc
        return bool(status == "UPDATE 1")

    async def set_paused(self, read_side_id: str, shards: Sequence[int], paused: bool) -> None:
        """Pause or resume ``shards``."""
        await self._control(
            "INSERT INTO cos_read_side_offsets (read_side_id, shard, paused) "
            "SELECT $1, shard, $3 FROM unnest($2::int[]) AS shard "
            "ON CONFLICT (read_side_id, shard) DO UPDATE "
            "SET paused = EXCLUDED.paused, updated_at = now()",
            read_side_id,
            shards,
            paused,
        )

    async def restart(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Clear the offsets of ``shards``: delivery starts again from the first event."""
        await self._control(
            "INSERT INTO cos_read_side_offsets (read_side_id, shard) "
            "SELECT $1, shard FROM unnest($2::int[]) AS shard "
            "ON CONFLICT (read_side_id, shard) DO UPDATE SET position = 0, updated_at = now()",
            read_side_id,
            shards,
        )

    async def skip(self, read_side_id: str, shards: Sequence[int]) -> None:
        """Move past the event at the current offset of each shard, where there is one."""
        await self._control(
            "UPDATE cos_read_side_offsets o SET position = o.position + 1, updated_at = now() "
            "WHERE o.read_side_id = $1 AND o.shard = ANY($2::int[]) AND EXISTS ("
            "  SELECT 1 FROM cos_journal j "
            "  WHERE j.shard = o.shard AND j.position = o.position + 1)",
            read_side_id,
            shards,
        )

    async def _control(
        self, sql: str, read_side_id: str, shards: Sequence[int], *args: object
    ) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql, read_side_id, list(shards), *args)
                await conn.execute("SELECT pg_notify($1, $2)", CONTROL_CHANNEL, read_side_id)
        except _TRANSIENT as exc:
            raise JournalUnavailableError(
                f"cannot change read side {read_side_id!r}: {exc}"
            ) from exc
