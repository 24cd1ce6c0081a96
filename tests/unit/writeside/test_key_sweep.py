"""The sweep of expired idempotency keys each node runs (fakes for the store)."""

from __future__ import annotations

import asyncio

from cos.errors import JournalUnavailableError
from cos.writeside import Sweeps
from cos.writeside._sweeps import forget_expired_keys
from tests.support.fakes import FakeJournalStore


async def test_a_sweep_round_stops_at_a_short_batch_or_after_ten() -> None:
    store = FakeJournalStore(delay=0)
    store.expired = [1000, 1000, 10, 1000]
    assert await forget_expired_keys(store) == 2010
    assert store.sweeps == [1000, 1000, 1000]
    store.expired, store.sweeps = [1000] * 12, []
    assert await forget_expired_keys(store) == 10_000
    assert len(store.sweeps) == 10


async def test_the_nodes_sweep_goes_on_after_a_failed_round() -> None:
    store = FakeJournalStore(delay=0)
    store.expired = [JournalUnavailableError("database down"), 3]
    sweeps = Sweeps(lambda: [], store, idle_seconds=120.0, key_window_seconds=0.02)
    sweeps.start()
    try:
        await asyncio.wait_for(store.swept.wait(), 10)  # the round after the failure ran
    finally:
        await sweeps.stop()
    assert store.sweeps[:2] == [1000, 1000]
