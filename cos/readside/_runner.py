"""One runner per (read side, shard): ordered, at-least-once delivery.

The runner lives on the host that owns the shard. It reads the journal by the
shard's gap-free positions, hands each event to the read handler and stores the
offset after success. The stored offset row is the truth: the runner reads it again
when an operator pokes it (or as a slow safety net) and stores progress with
compare-and-set, so a pause, skip or restart by an operator is never overwritten by
a runner mid-batch.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from chief_of_state.v1 import persistence_pb2
from cos.background import Background, read_ahead
from cos.errors import shorten
from cos.readside._config import REPLAY_ATTEMPTS, FailurePolicy, ReadSideConfig
from cos.storage import JournalReader, Offset, OffsetStore, StoredEvent

log = logging.getLogger(__name__)

# The last failure is stored at most once a second per runner while an event is retried,
# and a slow database delays delivery by at most this much.
_FAILURE_STORE_INTERVAL = 1.0
_FAILURE_STORE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Failure:
    """Why a delivery failed; ``permanent`` when no retry can succeed (the event is too
    large to send), so the policy skips or stops at once instead of retrying forever."""

    reason: str
    permanent: bool = False


# Hands one event (decoded, and as stored: its shard, position and trace context) to the
# read handler; returns None on success.
Deliver = Callable[[persistence_pb2.EventWrapper, StoredEvent], Awaitable[Failure | None]]


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    STOPPED = "stopped"  # the policy gave up: wait for an operator
    INTERRUPTED = "interrupted"  # an operator acted while we retried


@dataclass(frozen=True)
class RunnerTiming:
    """How a runner waits: batch size, safety poll and retry backoff (seconds)."""

    batch_size: int = 100
    poll_seconds: float = 1.0
    backoff_min: float = 0.2
    backoff_max: float = 10.0


class ReadSideRunner:
    """Delivers one shard's events to one read side."""

    def __init__(
        self,
        config: ReadSideConfig,
        shard: int,
        journal: JournalReader,
        offsets: OffsetStore,
        deliver: Deliver,
        timing: RunnerTiming = RunnerTiming(),
    ) -> None:
        self.config = config
        self.shard = shard
        self._journal = journal
        self._offsets = offsets
        self._deliver_one = deliver
        self._timing = timing
        self._new_events = asyncio.Event()
        self._control = asyncio.Event()
        self._stopped_at: int | None = None
        self._failure = ""  # the last delivery failure, in words
        self._failure_stored_at = float("-inf")  # monotonic time it was last stored
        self._known: Offset | None = None  # the offset row as last read or written
        self._read_at = 0.0
        # The next batch, read while the one before is delivered: (after which position,
        # the read).
        self._ahead: tuple[int, asyncio.Future[list[StoredEvent]]] | None = None
        self._background = Background()

    def start(self) -> None:
        """Start delivering in the background."""
        self._background.start(self._run_forever())

    async def stop(self) -> None:
        """Stop at once; undelivered progress is simply delivered again later."""
        await self._background.stop()
        self._drop_ahead()

    def wake(self, _commit: object = None) -> None:
        """New events were committed in the shard (a commit listener: what was committed
        does not matter, the journal is read from the offset)."""
        self._new_events.set()

    def poke(self) -> None:
        """An operator changed this read side: re-read the offset row now."""
        self._control.set()

    async def _run_forever(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "read side %s shard %s: round failed", self.config.read_side_id, self.shard
                )
                await self._wait(self._control, timeout=self._timing.backoff_max)

    async def _round(self) -> None:
        poked = self._control.is_set()
        if poked:
            self._stopped_at = None  # any operator action lets a stopped runner try again
        self._control.clear()
        self._new_events.clear()  # before reading: a commit after the read wakes the next wait
        offset = await self._offset(reread=poked)
        if offset.paused or self._stopped_at == offset.position:
            await self._wait(self._control)
            return
        events = await self._read(offset.position, fresh=poked)
        if not events:
            await self._wait(self._new_events, self._control)
            return
        position, outcome = await self._deliver_batch(events, offset.position)
        if position != offset.position:
            stored = await self._offsets.advance(
                self.config.read_side_id, self.shard, offset.position, position
            )
            # An operator changed the row meanwhile: forget it and read it again.
            self._known = replace(offset, position=position) if stored else None
        if outcome is Outcome.STOPPED:
            self._stopped_at = position
            log.error(
                "read side %s shard %s stopped at %s; skip, restart or resume it",
                self.config.read_side_id,
                self.shard,
                self._failure,
            )
            # Stored, so `cos-cli readside status` shows it through any node.
            await self._offsets.set_stopped(self.config.read_side_id, self.shard, self._failure)

    async def _read(self, after: int, fresh: bool) -> list[StoredEvent]:
        """The batch of events after position ``after``: the one read ahead when it is that
        one (and no operator acted since), else read now. A full batch has the next read
        started, to be delivered while it comes."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == after and not fresh:
            try:
                events = await ahead[1]
            except Exception:  # read again below, and fail there if it fails again
                events = await self._journal.read_shard(self.shard, after, self._timing.batch_size)
        else:
            if ahead is not None:
                ahead[1].cancel()
            events = await self._journal.read_shard(self.shard, after, self._timing.batch_size)
        if len(events) == self._timing.batch_size:
            following = self._journal.read_shard(
                self.shard, events[-1].position, self._timing.batch_size
            )
            self._ahead = (events[-1].position, read_ahead(following))
        return events

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None

    async def _offset(self, reread: bool) -> Offset:
        # Operator changes always poke the runner (locally or by NOTIFY) and the
        # runner's own writes are compare-and-set, so the row is read again only
        # when poked, after a lost compare-and-set, or as a slow safety net.
        stale = time.monotonic() - self._read_at > self._timing.poll_seconds * 5
        if reread or stale or self._known is None:
            self._known = await self._offsets.get(self.config.read_side_id, self.shard)
            self._read_at = time.monotonic()
        return self._known

    async def _deliver_batch(self, events: list[StoredEvent], position: int) -> tuple[int, Outcome]:
        outcome = Outcome.DELIVERED
        for event in events:
            if self._control.is_set():
                break  # operator acted: store progress, then re-read the row
            outcome = await self._deliver(event)
            if outcome in (Outcome.STOPPED, Outcome.INTERRUPTED):
                break
            position = event.position
        return position, outcome

    async def _deliver(self, event: StoredEvent) -> Outcome:
        wrapper = persistence_pb2.EventWrapper.FromString(event.payload)
        policy = self.config.failure_policy
        delay = self._timing.backoff_min
        failures = 0
        while True:
            failure = await self._deliver_one(wrapper, event)
            if failure is None:
                return Outcome.DELIVERED
            failures += 1
            entity = shorten(event.entity_id)
            self._failure = f"position {event.position} ({entity} rev {event.revision}):"
            self._failure += f" {failure.reason}"
            log.warning(
                "read side %s shard %s %s (attempt %d)",
                self.config.read_side_id,
                self.shard,
                self._failure,
                failures,
            )
            await self._store_failure()
            skips = policy in (FailurePolicy.SKIP, FailurePolicy.REPLAY_SKIP)
            if failure.permanent:  # never deliverable: no policy waits for it
                return Outcome.SKIPPED if skips else Outcome.STOPPED
            if policy is FailurePolicy.SKIP:
                return Outcome.SKIPPED
            if policy is FailurePolicy.STOP:
                return Outcome.STOPPED
            if (
                policy in (FailurePolicy.REPLAY_SKIP, FailurePolicy.REPLAY_STOP)
                and failures > REPLAY_ATTEMPTS
            ):
                return Outcome.SKIPPED if skips else Outcome.STOPPED
            if await self._wait(self._control, timeout=delay):
                return Outcome.INTERRUPTED
            delay = min(delay * 2, self._timing.backoff_max)

    async def _store_failure(self) -> None:
        """Store the last failure for ``cos-cli readside status``; never stops delivery."""
        now = time.monotonic()
        if now - self._failure_stored_at < _FAILURE_STORE_INTERVAL:
            return
        self._failure_stored_at = now
        try:
            await asyncio.wait_for(
                self._offsets.record_failure(self.config.read_side_id, self.shard, self._failure),
                _FAILURE_STORE_TIMEOUT,
            )
        except Exception as exc:  # the failure is logged above; delivery goes on
            log.warning(
                "read side %s shard %s: cannot store the last failure: %r",
                self.config.read_side_id,
                self.shard,
                exc,
            )

    async def _wait(self, *events: asyncio.Event, timeout: float | None = None) -> bool:
        """Wait for any of ``events`` or the timeout (default: the poll); True if one fired."""
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=self._timing.poll_seconds if timeout is None else timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return bool(done)
