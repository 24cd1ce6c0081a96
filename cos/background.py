"""Work that runs in the background of its owner until the owner stops it.

Every component with a loop (a sweep, a heartbeat, a runner, a poll) starts it with
:meth:`Background.start` and ends it with :meth:`Background.stop`, which cancels the tasks
and waits until each has ended: the create, cancel and wait written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeVar

T = TypeVar("T")


class Background:
    """The background tasks of one owner."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[object, object, None]) -> None:
        """Run ``work`` until it returns or :meth:`stop` is called."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def running(self) -> bool:
        """Whether some task is still running."""
        return bool(self._tasks)

    def cancel(self) -> None:
        """Ask every task to end, without waiting (:meth:`stop` waits)."""
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        tasks = list(self._tasks)
        self.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def every(
    seconds: float, step: Callable[[], Awaitable[object]], *, log: logging.Logger, what: str
) -> None:
    """Wait ``seconds``, then run ``step``, forever; a step that fails is logged (``what``
    failed) and the next one runs on time."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except Exception:
            log.exception("%s failed", what)


def read_ahead(work: Awaitable[T]) -> asyncio.Future[T]:
    """Start ``work`` now, for its result to be awaited later or dropped (cancelled): a
    read ahead. An error of one dropped after it failed is no news, and not logged as
    "never retrieved"."""
    future = asyncio.ensure_future(work)
    future.add_done_callback(_retrieved)
    return future


def _retrieved(future: asyncio.Future[T]) -> None:
    if not future.cancelled():
        future.exception()
