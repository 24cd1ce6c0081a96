"""Commits made here, made known: to this node's feeds at once, and to every other node
through a ``NOTIFY`` sent after the commit, off the command path."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from cos.subscription.hub import SubscriptionHub

log = logging.getLogger(__name__)


class Announcing(Protocol):
    """Sends the notification (:meth:`cos.postgres.PostgresJournalStore.announce`)."""

    async def announce(self, shards: Sequence[int]) -> None: ...


class CommitSource(Protocol):
    """A shard, as seen here: its number, and a signal after each commit."""

    number: int

    def add_commit_listener(self, listener: Callable[[], None]) -> None: ...


class ShardEventsLike(Protocol):
    """What :class:`CommitWakeups` passes the shards on to (the read sides)."""

    async def shards_started(self, shards: Sequence[CommitSource]) -> None: ...

    async def shards_stopped(self, shards: Sequence[int]) -> None: ...


class CommitAnnouncer:
    """Marks a shard on each commit; one task sends the marked shards in one statement,
    one statement at a time, so commits made meanwhile share the next. A commit only adds
    to a set: the command never waits for the notification."""

    def __init__(self, journal: Announcing) -> None:
        self._journal = journal
        self._shards: set[int] = set()
        self._marked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def committed(self, shard: int) -> None:
        self._shards.add(shard)
        self._marked.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class CommitWakeups:
    """The host's :class:`cos.sharding.host.ShardEvents`: passes shard starts and stops on
    to ``inner`` (the read sides), and on each commit of a shard served here wakes the
    hub's feed of it and marks it for the announcer."""

    def __init__(
        self, inner: ShardEventsLike, hub: SubscriptionHub, announcer: CommitAnnouncer
    ) -> None:
        self._inner = inner
        self._hub = hub
        self._announcer = announcer

    async def shards_started(self, shards: Sequence[CommitSource]) -> None:
        for shard in shards:
            shard.add_commit_listener(functools.partial(self._committed, shard.number))
        await self._inner.shards_started(shards)

    def _committed(self, shard: int) -> None:
        self._hub.wake(shard)
        self._announcer.committed(shard)

    async def shards_stopped(self, shards: Sequence[int]) -> None:
        await self._inner.shards_stopped(shards)
