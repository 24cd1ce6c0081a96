"""Shard placement: a balanced assignment that moves as few shards as possible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def plan_assignment(
    num_shards: int, hosts: Sequence[str], current: Mapping[int, str]
) -> dict[int, str]:
    """Assign every shard to one of ``hosts``.

    Shards stay where they are unless their host is gone or holds more than its
    fair share; freed shards go to the least loaded hosts. Each host ends with
    ``num_shards // len(hosts)`` or one more shards.
    """
    if not hosts:
        return {}
    ordered = sorted(hosts)
    base, extra = divmod(num_shards, len(ordered))
    quota = {host: base + (1 if i < extra else 0) for i, host in enumerate(ordered)}
    owned: dict[str, list[int]] = {host: [] for host in ordered}
    free: list[int] = []
    for shard in range(num_shards):
        host = current.get(shard)
        if host in owned:
            owned[host].append(shard)
        else:
            free.append(shard)
    # Hosts over quota give up their highest shards; the extra slots go to the
    # hosts that already hold the most, so fewer shards move.
    by_load = sorted(ordered, key=lambda h: -len(owned[h]))
    quota = _rebalance_quota(quota, by_load)
    for host in ordered:
        while len(owned[host]) > quota[host]:
            free.append(owned[host].pop())
    for shard in sorted(free):
        host = min(ordered, key=lambda h: (len(owned[h]) - quota[h], h))
        owned[host].append(shard)
    return {shard: host for host, shards in owned.items() for shard in shards}


def _rebalance_quota(quota: dict[str, int], by_load: Sequence[str]) -> dict[str, int]:
    extra = sum(1 for q in quota.values() if q > min(quota.values()))
    base = min(quota.values())
    return {host: base + (1 if i < extra else 0) for i, host in enumerate(by_load)}
