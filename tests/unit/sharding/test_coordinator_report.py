"""The coordinator's shard report, with in-process hosts (no Ray, no database)."""

from __future__ import annotations

from cos.sharding import Coordinator, ShardReport
from tests.support.fakes import FakeHost


async def test_the_report_names_owner_address_epoch_and_active_entities() -> None:
    coordinator = Coordinator(4, failure_timeout=0.2)
    first, second = FakeHost(active=10), FakeHost(active=20)
    try:
        await coordinator.register_host("h1", first, "10.0.0.1:9000")
        await coordinator.register_host("h2", second, "10.0.0.2:9000")
        report = await coordinator.report()
        owners = {shard: "h1" for shard in first.owned} | {s: "h2" for s in second.owned}
        assert [row.shard for row in report] == [0, 1, 2, 3]
        for row in report:
            host, address, active = (
                (first, "10.0.0.1:9000", 10)
                if owners[row.shard] == "h1"
                else (second, "10.0.0.2:9000", 20)
            )
            assert row == ShardReport(
                row.shard, owners[row.shard], address, host.owned[row.shard], active + row.shard
            )
        # A silent host: its rows stay, with the entity count unknown.
        second.silent = True
        report = await coordinator.report()
        assert {row.shard: row.active_entities is None for row in report} == {
            shard: owners[shard] == "h2" for shard in range(4)
        }
    finally:
        await coordinator.close()
