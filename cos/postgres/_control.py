"""Operator changes to read sides, heard through PostgreSQL ``LISTEN``: a change made
through any host reaches the runners of the host that runs the read side at once.

The listening connection is a long-lived one of its own. When it is lost (a database
restart), it is opened again, retrying every second, and since notifications sent
meanwhile are lost, every read side is then treated as changed (its runners re-read
their offset rows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from cos.background import Background
from cos.postgres._database import DatabaseTarget
from cos.postgres._offsets import CONTROL_CHANNEL

log = logging.getLogger(__name__)

_RECONNECT_PAUSE = 1.0


class ControlListener:
    """Calls ``on_change(read_side_id)`` for every change ``PostgresOffsetStore`` commits,
    and ``on_change(None)`` after the connection was lost and opened again.

    Another ``channel`` (e.g. ``JOURNAL_CHANNEL``, whose payload is a shard) works the same.
    """

    def __init__(
        self,
        target: DatabaseTarget,
        on_change: Callable[[str | None], None],
        *,
        channel: str = CONTROL_CHANNEL,
    ) -> None:
        self._channel = channel
        self._target = target
        self._on_change = on_change
        self._connection: asyncpg.Connection | None = None
        self._reconnecting = Background()
        self._closed = False

    async def start(self) -> None:
        """Open the dedicated connection and listen."""
        await self._open()

    async def _open(self) -> None:
        connection = await asyncpg.connect(**self._target.connect_kwargs())
        await connection.add_listener(self._channel, self._heard)
        connection.add_termination_listener(self._lost)
        self._connection = connection

    def _heard(self, _conn: object, _pid: int, _channel: str, read_side_id: str) -> None:
        self._on_change(read_side_id)

    def _lost(self, _conn: object) -> None:
        if self._closed or self._reconnecting.running:
            return
        log.warning("lost the LISTEN connection for %s; opening it again", self._channel)
        self._reconnecting.start(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            try:
                await self._open()
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
                log.debug("LISTEN connection not back yet: %s", exc)
                await asyncio.sleep(_RECONNECT_PAUSE)
                continue
            log.info("LISTEN connection for %s is back", self._channel)
            self._on_change(None)  # what was sent meanwhile is lost: re-read everything
            return

    async def close(self) -> None:
        """Stop listening."""
        self._closed = True
        await self._reconnecting.stop()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
