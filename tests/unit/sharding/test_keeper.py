"""Shard takeover by leases (cos.sharding.keeper), the pure parts."""

from __future__ import annotations

from cos.sharding._keeper import routes_from, takeover_plan
from cos.storage import Lease

PREFIX = "c-host-"


def leases(owners: dict[int, str]) -> list[Lease]:
    return [Lease(shard, owner, 10 + shard) for shard, owner in owners.items()]


def test_live_hosts_divide_a_lost_hosts_shards_once_and_keep_their_own() -> None:
    table = leases({s: ["c-host-a", "c-host-b", "c-host-dead"][s % 3] for s in range(9)})
    live = {"c-host-a", "c-host-b"}
    plans = {host: takeover_plan(9, host, live, table, PREFIX) for host in live}
    taken = [shard for plan in plans.values() for shard in plan]
    assert sorted(taken) == [2, 5, 8]  # each orphan once, nothing of a live host
    assert {len(plan) for plan in plans.values()} == {1, 2}  # balanced: 4 and 5 in all
    assert all(plan[s] == 10 + s for plan in plans.values() for s in plan)  # the epoch read


def test_nothing_is_taken_by_a_host_that_is_not_live_or_from_another_runtime() -> None:
    table = leases({0: "c-host-dead", 1: "other-host-x", 2: "c-host-a"})
    assert takeover_plan(3, "c-host-a", {"c-host-a"}, table, PREFIX) == {0: 10}
    assert takeover_plan(3, "c-host-z", {"c-host-a"}, table, PREFIX) == {}
    # Shards beyond the runtime's count are not its own.
    assert takeover_plan(1, "c-host-a", {"c-host-a"}, leases({5: "c-host-dead"}), PREFIX) == {}


def test_routes_name_only_live_owners() -> None:
    table = leases({0: "c-host-a", 1: "c-host-dead"})
    assert routes_from(table, {"c-host-a": "10.0.0.1:9000"}) == {0: ("c-host-a", "10.0.0.1:9000")}
