"""Coordinator: the shard -> host table, its epochs, hand-overs and failure detection.

A plain class; cos.deploy makes it a named, detached Ray actor that Ray
restarts if it dies. Its inputs are injected: the hosts register themselves,
``find_host`` finds a host by name after a restart, and the shard leases
(``read_leases``) are the record of who owned what. Placement is ``reconcile()``:
plan, then hand shards over (old owner releases, new owner takes the lease with a
higher epoch), each hand-over guarded so one failure does not stop the others.

Given the runtime's pods (``pods``, Kubernetes mode), it also waits for the cluster to
form before the first assignment and moves a leaving pod's shards at once
(cos.sharding.formation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cos.background import Background
from cos.sharding._formation import Membership, Pod, PodSource
from cos.sharding._handles import CoordinatorHandle, HostHandle
from cos.sharding._names import host_prefix
from cos.sharding._placement import plan_assignment
from cos.sharding._report import ShardReport
from cos.storage import Lease

log = logging.getLogger(__name__)

FindHost = Callable[[str], HostHandle]


@dataclass(frozen=True)
class Ownership:
    """One row of the shard table."""

    shard: int
    host_id: str
    epoch: int


@dataclass
class _Host:
    handle: HostHandle
    address: str
    seen: float


class Coordinator:
    """Keeps every shard owned by exactly one live host."""

    def __init__(
        self,
        num_shards: int,
        *,
        layout: str = "",
        cluster: str | None = None,
        read_leases: Callable[[], Awaitable[list[Lease]]] | None = None,
        find_host: FindHost | None = None,
        find_self: Callable[[], CoordinatorHandle] | None = None,
        failure_timeout: float = 5.0,
        pods: Callable[[], PodSource] | None = None,
    ) -> None:
        self._num_shards = num_shards
        self._layout = layout
        self._cluster = cluster
        self._read_leases = read_leases
        self._find_host = find_host
        self._find_self = find_self
        self._failure_timeout = failure_timeout
        self._hosts: dict[str, _Host] = {}
        self._table: dict[int, Ownership] = {}
        self._lock = asyncio.Lock()
        self._self: CoordinatorHandle = self
        self._starting: asyncio.Future[None] | None = None
        self._background = Background()
        self._pod_source = pods
        self._membership: Membership | None = None

    async def layout(self) -> str:
        """What every host of this runtime must share, in words (shard count, journal)."""
        return self._layout

    async def start(self) -> None:
        """Rebuild the table from the leases and watch the hosts. Every entry point
        calls it, so a coordinator restarted by Ray resumes on its first call; the
        work runs once, whoever calls first."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        # Hosts call back through this: the actor's own handle, found by its name.
        # Lookups block, so they run off the event loop.
        if self._find_self is not None:
            self._self = await asyncio.to_thread(self._find_self)
        if self._pod_source is not None:
            source = self._pod_source()
            self._membership = Membership(source.expected, source.timeout, source.selector)
            self._background.start(source.watch(self._pod_seen))
        async with self._lock:
            await self._rebuild()
        self._background.start(self._watch_forever())

    async def close(self) -> None:
        """Stop watching hosts and pods (tests; the actor simply ends)."""
        await self._background.stop()

    async def _rebuild(self) -> None:
        if self._read_leases is None or self._find_host is None:
            return
        leases = await self._read_leases()
        # Only hosts of this runtime: another runtime sharing the schema is not ours.
        prefix = host_prefix(self._cluster) if self._cluster else ""
        for owner in {lease.owner for lease in leases if lease.owner.startswith(prefix)}:
            with contextlib.suppress(Exception):  # a host that is gone stays gone
                handle = await asyncio.to_thread(self._find_host, owner)
                address = await asyncio.wait_for(handle.address(), self._failure_timeout)
                self._hosts[owner] = _Host(handle, address, time.monotonic())
                await handle.attach(self._self)
        for lease in leases:
            if lease.owner in self._hosts and lease.shard < self._num_shards:
                self._table[lease.shard] = Ownership(lease.shard, lease.owner, lease.epoch)
        if self._hosts:
            log.info(
                "coordinator rebuilt %d shards on %d hosts", len(self._table), len(self._hosts)
            )
            if self._membership is not None:
                self._membership.formed = True  # restarted: the cluster formed long ago
            await self._reconcile()

    async def register_host(self, host_id: str, handle: HostHandle, address: str) -> list[int]:
        """Add a host (a node joined) and rebalance; returns the shards it got."""
        await self.start()
        async with self._lock:
            self._hosts[host_id] = _Host(handle, address, time.monotonic())
            await handle.attach(self._self)
            await self._reconcile()
        return sorted(s for s, o in self._table.items() if o.host_id == host_id)

    async def deregister_host(self, host_id: str) -> None:
        """A host leaves gracefully: its shards are handed over before it goes."""
        await self.start()
        async with self._lock:
            leaving = self._hosts.pop(host_id, None)
            if self._membership is not None:
                self._membership.forget([host_id])
            if leaving is not None:
                await self._reconcile(leaving={host_id: leaving})

    async def _pod_seen(self, pod: Pod) -> None:
        """A pod appeared, changed or went: its hosts' shards move at once when it is
        leaving; before the cluster has formed, it may be the one that completes it."""
        membership = self._membership
        assert membership is not None
        async with self._lock:
            membership.seen(pod)
            hosts = {h: host.address for h, host in self._hosts.items()}
            on_pod = membership.hosts_on(pod, hosts) if pod.leaving else []
            if on_pod:
                state = "deleted" if pod.gone else "terminating"
                log.warning(
                    "pod %s is %s: moving the shards of %s now", pod.name, state, ", ".join(on_pod)
                )
                leaving = {h: self._hosts.pop(h) for h in on_pod}
                membership.forget(on_pod)
                # A terminating pod's host still runs and releases its shards first.
                await self._reconcile(leaving=None if pod.gone else leaving)
            elif not membership.formed:
                await self._reconcile()

    async def routes(self) -> dict[int, tuple[str, str]]:
        """shard -> (host id, address) for routing."""
        await self.start()
        return self._routes()

    def _routes(self) -> dict[int, tuple[str, str]]:
        return {
            shard: (o.host_id, self._hosts[o.host_id].address)
            for shard, o in self._table.items()
            if o.host_id in self._hosts
        }

    async def table(self) -> list[Ownership]:
        """The shard table, by shard number."""
        await self.start()
        return [self._table[s] for s in sorted(self._table)]

    async def report(self) -> list[ShardReport]:
        """The shard table with each owner's address and entities in memory."""
        await self.start()
        hosts = dict(self._hosts)

        async def active_on(host: _Host) -> dict[int, int]:
            try:
                infos = await asyncio.wait_for(host.handle.shards(), self._failure_timeout)
            except Exception:  # a silent host: its counts are unknown, the table is not
                return {}
            return {info.shard: info.active_entities for info in infos}

        counts = await asyncio.gather(*(active_on(host) for host in hosts.values()))
        active = dict(zip(hosts, counts, strict=True))
        return [
            ShardReport(
                o.shard,
                o.host_id,
                hosts[o.host_id].address if o.host_id in hosts else "",
                o.epoch,
                active.get(o.host_id, {}).get(o.shard),
            )
            for o in (self._table[s] for s in sorted(self._table))
        ]

    async def hosts(self) -> dict[str, str]:
        """host id -> address of every live host."""
        return {host_id: host.address for host_id, host in self._hosts.items()}

    async def _reconcile(self, leaving: dict[str, _Host] | None = None) -> None:
        if self._membership is not None and not self._membership.check_formed(
            {h: host.address for h, host in self._hosts.items()}
        ):
            return  # no shard is assigned before the cluster has formed
        leaving = leaving or {}
        current = {s: o.host_id for s, o in self._table.items() if o.host_id in self._hosts}
        plan = plan_assignment(self._num_shards, list(self._hosts), current)
        moves: dict[tuple[str | None, str], list[int]] = {}
        for shard, host_id in sorted(plan.items()):
            owner = self._table[shard].host_id if shard in self._table else None
            if owner != host_id:
                moves.setdefault((owner, host_id), []).append(shard)
        for (owner, host_id), shards in moves.items():
            await self._hand_over(
                shards, self._hosts.get(owner or "") or leaving.get(owner or ""), host_id
            )
        for shard in [s for s, o in self._table.items() if o.host_id not in self._hosts]:
            del self._table[shard]  # no live host left to serve it
        await self._publish_routes()

    async def _hand_over(self, shards: list[int], owner: _Host | None, host_id: str) -> None:
        if owner is not None:
            try:
                await asyncio.wait_for(owner.handle.release(shards), 60)
            except Exception:
                log.exception("old owner did not release shards %s; fencing covers it", shards)
        try:
            epochs = await self._hosts[host_id].handle.assign(shards)
        except Exception:
            log.exception("assigning shards %s to host %s failed", shards, host_id)
            return
        for shard, epoch in epochs.items():
            self._table[shard] = Ownership(shard, host_id, epoch)

    async def _publish_routes(self) -> None:
        routes = self._routes()
        for host_id, host in list(self._hosts.items()):
            try:
                await asyncio.wait_for(host.handle.set_routes(routes), self._failure_timeout)
            except Exception:
                log.warning("could not send routes to host %s", host_id)

    async def _watch_forever(self) -> None:
        interval = min(1.0, self._failure_timeout / 5)
        while True:
            await asyncio.sleep(interval)
            try:
                if self._membership is not None and not self._membership.formed:
                    async with self._lock:
                        await self._reconcile()  # formation may have timed out
                await self._check_hosts(interval)
            except Exception:
                log.exception("host check failed")

    async def _check_hosts(self, interval: float) -> None:
        now = time.monotonic()
        pings = {
            host_id: asyncio.ensure_future(asyncio.wait_for(host.handle.ping(), interval))
            for host_id, host in self._hosts.items()
        }
        dead = []
        for host_id, ping in pings.items():
            try:
                await ping
                if host_id in self._hosts:
                    self._hosts[host_id].seen = now
            except Exception:
                host = self._hosts.get(host_id)
                if host is not None and now - host.seen >= self._failure_timeout:
                    dead.append(host_id)
        if dead:
            async with self._lock:
                for host_id in dead:
                    log.warning("host %s stopped answering; moving its shards", host_id)
                    self._hosts.pop(host_id, None)
                if self._membership is not None:
                    self._membership.forget(dead)
                await self._reconcile()
