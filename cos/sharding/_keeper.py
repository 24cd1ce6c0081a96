"""LeaseKeeper: a host's heartbeat in PostgreSQL, and shard takeover without a coordinator.

The coordinator (a Ray actor) places shards while it answers. It lives on one node,
usually Ray's head, and Ray restarts it elsewhere only while Ray's control store (the
GCS, on the head) runs. So that the database is the one part whose loss stops the
service, every host renews a heartbeat row each second, and when the coordinator has not
answered a host for ``COS_HOST_FAILURE_TIMEOUT_SECONDS``, the live hosts divide the shards
of hosts whose heartbeat is older than that among themselves, each taking the leases
:func:`takeover_plan` gives it. A lease is taken only from the epoch that was read, so two
hosts never both win a shard, and fencing stops a host that was only slow. Routes then
come from the leases too. A coordinator that comes back rebuilds its table from the
leases and places shards again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping, Sequence

from cos.background import Background
from cos.errors import CosError
from cos.sharding._handles import Routes
from cos.sharding._host import ShardHost
from cos.sharding._placement import plan_assignment
from cos.storage import Lease, LeaseStore

log = logging.getLogger(__name__)


def takeover_plan(
    num_shards: int, host_id: str, live: Collection[str], leases: Sequence[Lease], prefix: str
) -> dict[int, int]:
    """The shards of lost hosts that ``host_id`` takes (shard -> epoch read).

    Every live host computes the same balanced plan from the same rows, so together they
    take each orphan once; shards stay with their live owners.
    """
    ours = [lease for lease in leases if lease.owner.startswith(prefix)]
    ours = [lease for lease in ours if lease.shard < num_shards]
    orphans = {lease.shard: lease.epoch for lease in ours if lease.owner not in live}
    if not orphans or host_id not in live:
        return {}
    current = {lease.shard: lease.owner for lease in ours if lease.owner in live}
    plan = plan_assignment(num_shards, sorted(live), current)
    return {shard: epoch for shard, epoch in orphans.items() if plan.get(shard) == host_id}


def routes_from(leases: Sequence[Lease], live: Mapping[str, str]) -> Routes:
    """shard -> (owner, address) for every shard whose owner is live."""
    return {
        lease.shard: (lease.owner, live[lease.owner]) for lease in leases if lease.owner in live
    }


class LeaseKeeper:
    """Renews the host's heartbeat, and takes shards over while no coordinator answers."""

    def __init__(
        self,
        host: ShardHost,
        leases: LeaseStore,
        *,
        address: str,
        prefix: str,
        num_shards: int,
        failure_timeout: float,
    ) -> None:
        self._host = host
        self._leases = leases
        self._address = address
        self._prefix = prefix
        self._num_shards = num_shards
        self._timeout = failure_timeout
        self._interval = min(1.0, failure_timeout / 5)
        self._silent_since: float | None = None
        self._degraded = False
        self._heartbeat_failing = False
        self._background = Background()

    def start(self) -> None:
        """Start the loop."""
        self._background.start(self._run_forever())

    async def stop(self) -> None:
        """Stop the loop and drop the heartbeat (the host has stopped)."""
        await self._background.stop()
        with contextlib.suppress(CosError):
            await self._leases.forget_host(self._host.host_id)

    async def _run_forever(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:
                log.exception("shard host %s: lease keeping failed", self._host.host_id)
            await asyncio.sleep(self._interval)

    async def beat(self) -> None:
        """One round: heartbeat, ask the coordinator, take shards over if it is gone."""
        await self._heartbeat()
        if await self._coordinator_answers():
            self._silent_since = None
            if self._degraded:
                self._degraded = self._host.coordinator_silent = False
                log.warning(
                    "shard host %s: the coordinator answers again; it places shards",
                    self._host.host_id,
                )
            return
        now = time.monotonic()
        self._silent_since = self._silent_since or now
        if now - self._silent_since < self._timeout:
            return
        if not self._degraded:
            self._degraded = self._host.coordinator_silent = True
            log.error(
                "shard host %s: the coordinator has not answered for %.0f s (is Ray's head"
                " node down?); the shards of lost hosts now move by their leases in PostgreSQL",
                self._host.host_id,
                now - self._silent_since,
            )
        await self._take_over()

    async def _heartbeat(self) -> None:
        try:
            await self._leases.heartbeat(self._host.host_id, self._address)
        except CosError as exc:
            if not self._heartbeat_failing:
                log.error("shard host %s: heartbeat failed: %s", self._host.host_id, exc)
            self._heartbeat_failing = True
            return
        if self._heartbeat_failing:
            log.warning("shard host %s: heartbeat renewed again", self._host.host_id)
        self._heartbeat_failing = False

    async def _coordinator_answers(self) -> bool:
        coordinator = self._host.coordinator
        if coordinator is None:
            return True  # not registered yet: nothing to take over on its behalf
        try:
            routes = await asyncio.wait_for(coordinator.routes(), self._timeout / 2)
        except Exception:
            return False
        await self._host.set_routes(routes)
        return True

    async def _take_over(self) -> None:
        standing = await self._leases.standing(self._prefix, self._timeout)
        plan = takeover_plan(
            self._num_shards, self._host.host_id, standing.live, standing.leases, self._prefix
        )
        routes = dict(routes_from(standing.leases, standing.live))
        if plan:
            lost = sorted({lease.owner for lease in standing.leases if lease.shard in plan})
            taken = await self._host.take_over(plan)
            log.warning(
                "shard host %s took over shards %s of lost hosts %s",
                self._host.host_id,
                taken,
                ", ".join(lost),
            )
            routes.update({shard: (self._host.host_id, self._address) for shard in taken})
        await self._host.set_routes(routes)
