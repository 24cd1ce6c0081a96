"""The sweep of expired idempotency keys each host runs (fakes for the store)."""

from __future__ import annotations

import asyncio

from cos.errors import JournalUnavailableError
from cos.settings import CosSettings
from cos.sharding.host import ShardHost, forget_expired_keys
from tests.fakes import FakeJournalStore, FakePeers, FakeWriteHandler


async def test_a_sweep_round_stops_at_a_short_batch_or_after_ten() -> None:
    store = FakeJournalStore(delay=0)
    store.expired = [1000, 1000, 10, 1000]
    assert await forget_expired_keys(store) == 2010
    assert store.sweeps == [1000, 1000, 1000]
    store.expired, store.sweeps = [1000] * 12, []
    assert await forget_expired_keys(store) == 10_000
    assert len(store.sweeps) == 10


async def test_the_hosts_sweep_goes_on_after_a_failed_round() -> None:
    store = FakeJournalStore(delay=0)
    store.expired = [JournalUnavailableError("database down"), 3]
    settings = CosSettings(write_side_host="h", write_side_port=1, idempotency_window_seconds=0.02)
    host = ShardHost(
        host_id="h",
        settings=settings,
        journal=store,
        leases=store,
        handler=FakeWriteHandler(),
        peers=FakePeers(),
    )
    host.start()
    try:
        await asyncio.wait_for(store.swept.wait(), 10)  # the round after the failure ran
    finally:
        await host.close()
    assert store.sweeps[:2] == [1000, 1000]
