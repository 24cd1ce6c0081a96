from __future__ import annotations

from collections import Counter

from cos.sharding._placement import plan_assignment


def loads(plan: dict[int, str]) -> list[int]:
    return sorted(Counter(plan.values()).values())


def test_one_host_gets_every_shard() -> None:
    assert plan_assignment(16, ["a"], {}) == {s: "a" for s in range(16)}


def test_no_hosts_no_assignment() -> None:
    assert plan_assignment(4, [], {0: "gone"}) == {}


def test_balanced_within_one() -> None:
    plan = plan_assignment(16, ["a", "b", "c"], {})
    assert set(plan) == set(range(16))
    assert loads(plan) == [5, 5, 6]


def test_joining_host_takes_only_its_share() -> None:
    before = plan_assignment(16, ["a", "b"], {})
    after = plan_assignment(16, ["a", "b", "c"], before)
    moved = [s for s in range(16) if before[s] != after[s]]
    assert all(after[s] == "c" for s in moved)
    assert len(moved) == 5
    assert loads(after) == [5, 5, 6]


def test_leaving_host_shards_spread_and_others_stay() -> None:
    before = plan_assignment(12, ["a", "b", "c"], {})
    after = plan_assignment(12, ["a", "b"], before)
    assert all(after[s] == before[s] for s in range(12) if before[s] != "c")
    assert loads(after) == [6, 6]


def test_stable_when_nothing_changes() -> None:
    before = plan_assignment(10, ["a", "b", "c"], {})
    assert plan_assignment(10, ["c", "b", "a"], before) == before
