"""Commits made here, made known: to this node's feeds at once, and to every other node
through a ``NOTIFY`` sent after the commit, off the command path."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from cos.background import Background
from cos.storage import JournalStore
from cos.subscription._hub import SubscriptionHub

log = logging.getLogger(__name__)


class CommitSource(Protocol):
    """A shard, as seen here: its number, and a signal after each commit."""

    number: int

    def add_commit_listener(self, listener: Callable[[object], None]) -> None: ...


class CommitAnnouncer:
    """Marks a shard on each commit; one task sends the marked shards in one statement,
    one statement at a time, so commits made meanwhile share the next. A commit only adds
    to a set: the command never waits for the notification."""

    def __init__(self, journal: JournalStore) -> None:
        self._journal = journal
        self._shards: set[int] = set()
        self._marked = asyncio.Event()
        self._background = Background()

    def committed(self, shard: int) -> None:
        """Mark ``shard``: it has new committed events."""
        self._shards.add(shard)
        self._marked.set()

    def start(self) -> None:
        """Start sending."""
        self._background.start(self._run())

    async def _run(self) -> None:
        while True:
            await self._marked.wait()
            self._marked.clear()
            shards, self._shards = sorted(self._shards), set()
            try:
                await self._journal.announce(shards)
            except Exception as exc:  # the other nodes' safety poll finds the events
                log.warning("subscriptions: commits of shards %s not announced: %r", shards, exc)

    async def close(self) -> None:
        """Stop sending."""
        await self._background.stop()


class CommitWakeups:
    """Told of the shards served here (a :class:`cos.sharding.host.ShardEvents`): on each
    commit of one, it wakes the hub's feed of it and marks it for the announcer."""

    def __init__(self, hub: SubscriptionHub, announcer: CommitAnnouncer) -> None:
        self._hub = hub
        self._announcer = announcer

    async def shards_started(self, shards: Sequence[CommitSource]) -> None:
        """Listen to the commits of ``shards``."""
        for shard in shards:
            shard.add_commit_listener(functools.partial(self._committed, shard.number))

    def _committed(self, shard: int, _commit: object) -> None:
        self._hub.wake(shard)
        self._announcer.committed(shard)

    async def shards_stopped(self, shards: Sequence[int]) -> None:
        """Nothing to do: a shard that left stops committing here."""
