"""Kubernetes-mode formation in the coordinator, with in-process hosts and a pod source
the test drives (no Ray, no Kubernetes: cos.kubernetes has its own tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from cos.sharding import Coordinator, Pod, PodSeen
from cos.sharding._formation import Membership
from tests.support.fakes import FakeHost

SHARDS = 6


class ScriptedPods:
    """A pod source whose pods the test announces with :meth:`show`."""

    selector = "pods labelled app=test"

    def __init__(self, expected: int, timeout: float = 60.0) -> None:
        self.expected, self.timeout = expected, timeout
        self._seen: PodSeen | None = None
        self._ready = asyncio.Event()

    async def watch(self, seen: PodSeen) -> None:
        self._seen = seen
        self._ready.set()
        await asyncio.Event().wait()  # until cancelled

    async def show(self, pod: Pod) -> None:
        await self._ready.wait()
        assert self._seen is not None
        await self._seen(pod)


def running(name: str, ip: str) -> Pod:
    return Pod(name, ip, running=True)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Coordinator, ScriptedPods]]:
    pods = ScriptedPods(expected=3)
    # A host that falls silent would only be noticed after a minute: pod events act first.
    coordinator = Coordinator(SHARDS, failure_timeout=60.0, pods=lambda: pods)
    await coordinator.start()
    yield coordinator, pods
    await coordinator.close()


async def join(coordinator: Coordinator, pods: ScriptedPods, n: int) -> FakeHost:
    host = FakeHost()
    await pods.show(running(f"cos-{n}", f"10.244.0.{n}"))
    await coordinator.register_host(f"h{n}", host, f"10.244.0.{n}:9000")
    return host


async def test_no_shard_is_assigned_before_the_expected_pods_run_a_host(
    cluster: tuple[Coordinator, ScriptedPods],
) -> None:
    coordinator, pods = cluster
    first = await join(coordinator, pods, 1)
    # A pod that is not running yet, and a running pod without a host, do not count.
    await pods.show(Pod("cos-2", "10.244.0.2", running=False))
    await coordinator.register_host("h2", second := FakeHost(), "10.244.0.2:9000")
    await pods.show(running("cos-3", "10.244.0.3"))
    assert (first.owned, second.owned, await coordinator.routes()) == ({}, {}, {})

    await pods.show(running("cos-2", "10.244.0.2"))  # now two of three
    assert await coordinator.routes() == {}
    third = FakeHost()
    await coordinator.register_host("h3", third, "10.244.0.3:9000")
    owned = [sorted(host.owned) for host in (first, second, third)]
    assert sorted(s for shards in owned for s in shards) == list(range(SHARDS))
    assert [len(shards) for shards in owned] == [2, 2, 2]
    assert len(await coordinator.routes()) == SHARDS


async def test_the_wait_ends_after_the_formation_timeout() -> None:
    pods = ScriptedPods(expected=3, timeout=0.5)
    coordinator = Coordinator(SHARDS, failure_timeout=60.0, pods=lambda: pods)
    try:
        await coordinator.start()
        started = time.monotonic()
        only = await join(coordinator, pods, 1)
        assert only.owned == {}
        while not only.owned:
            assert time.monotonic() - started < 10, "the formation timeout did not end the wait"
            await asyncio.sleep(0.05)
        assert sorted(only.owned) == list(range(SHARDS))
        assert time.monotonic() - started >= 0.5
    finally:
        await coordinator.close()


async def test_a_terminating_pod_hands_its_shards_over_at_once(
    cluster: tuple[Coordinator, ScriptedPods],
) -> None:
    coordinator, pods = cluster
    hosts = [await join(coordinator, pods, n) for n in (1, 2, 3)]
    leaving = sorted(hosts[2].owned)
    await pods.show(Pod("cos-3", "10.244.0.3", running=True, terminating=True))
    # The host still runs: it released its shards, and the others own them now.
    assert (hosts[2].owned, sorted(hosts[2].released)) == ({}, leaving)
    assert sorted([*hosts[0].owned, *hosts[1].owned]) == list(range(SHARDS))
    assert {owner for owner, _ in (await coordinator.routes()).values()} == {"h1", "h2"}
    # Its own hand-over when SIGTERM reaches it later finds nothing left to do.
    await coordinator.deregister_host("h3")
    assert sorted([*hosts[0].owned, *hosts[1].owned]) == list(range(SHARDS))


async def test_a_deleted_pod_has_its_shards_moved_without_asking_it(
    cluster: tuple[Coordinator, ScriptedPods],
) -> None:
    coordinator, pods = cluster
    hosts = [await join(coordinator, pods, n) for n in (1, 2, 3)]
    await pods.show(Pod("cos-2", "10.244.0.2", running=False, gone=True))
    assert hosts[1].released == []  # gone: nobody to ask; leases fence it
    assert sorted([*hosts[0].owned, *hosts[2].owned]) == list(range(SHARDS))
    assert {owner for owner, _ in (await coordinator.routes()).values()} == {"h1", "h3"}


async def test_a_new_pod_with_a_departed_pods_address_is_another_host(
    cluster: tuple[Coordinator, ScriptedPods],
) -> None:
    coordinator, pods = cluster
    hosts = [await join(coordinator, pods, n) for n in (1, 2, 3)]
    # cos-3 terminates; its replacement gets the same address before the old pod's
    # deletion is seen.
    await pods.show(Pod("cos-3", "10.244.0.3", running=True, terminating=True))
    await pods.show(running("cos-3b", "10.244.0.3"))
    replacement = FakeHost()
    await coordinator.register_host("h3b", replacement, "10.244.0.3:9000")
    assert len(replacement.owned) == 2
    await pods.show(Pod("cos-3", "10.244.0.3", running=False, gone=True))
    assert len(replacement.owned) == 2 and replacement.released == []
    assert hosts[2].owned == {}


async def test_formation_counts_running_pods_with_a_host_and_then_stays_formed() -> None:
    membership = Membership(expected=3, timeout=60.0, selector="pods")
    membership.seen(running("cos-1", "10.0.0.1"))
    assert not membership.check_formed({"h1": "10.0.0.1:9000"})
    membership.seen(running("cos-2", "10.0.0.2"))
    membership.seen(running("cos-3", "10.0.0.3"))
    hosts = {f"h{n}": f"10.0.0.{n}:9000" for n in (1, 2, 3)}
    assert membership.check_formed(hosts)
    # Once formed, losing pods does not stop assignments.
    membership.seen(Pod("cos-3", "10.0.0.3", running=False, gone=True))
    assert membership.check_formed({"h1": "10.0.0.1:9000"})
