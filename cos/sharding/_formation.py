"""Cluster formation from an orchestrator's view of the runtime's pods.

With ``COS_DEPLOYMENT_MODE=kubernetes`` the coordinator also knows the runtime's pods
(cos.kubernetes lists and watches them). Two things follow:

- **Formation.** The first shard assignment waits until ``expected`` pods run with a
  registered host, or until ``timeout`` has passed, so a cluster starting pod by pod
  does not move every shard at each arrival.
- **Departures.** A pod that is deleted, or starts terminating, has its hosts' shards
  moved at once, instead of after ``COS_HOST_FAILURE_TIMEOUT_SECONDS`` of silence.

A host is tied to its pod by the IP it advertises (``POD_IP``), once, while that pod
is known and not leaving: a later pod that gets the same IP is another host's pod.
Everything here is pure bookkeeping; the coordinator acts on its answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

_WAITING_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class Pod:
    """One of the runtime's pods, as last seen."""

    name: str
    ip: str  # empty until the pod has an address
    running: bool  # phase Running, every container started
    terminating: bool = False  # deletion asked for; the pod still runs (grace period)
    gone: bool = False  # deleted

    @property
    def leaving(self) -> bool:
        return self.terminating or self.gone


PodSeen = Callable[[Pod], Awaitable[None]]


class PodSource(Protocol):
    """The runtime's pods, from the orchestrator."""

    expected: int  # pods the cluster should have (COS_REPLICA_COUNT)
    timeout: float  # longest wait for them before the first assignment
    selector: str  # which pods, in words, for the logs

    async def watch(self, seen: PodSeen) -> None:
        """Report every pod, then every change, until cancelled (reconnecting itself)."""
        ...


def ip_of(address: str) -> str:
    """The host part of ``host:port`` (``[v6]:port`` too)."""
    host = address.rsplit(":", 1)[0]
    return host.strip("[]")


@dataclass
class Membership:
    """The pods, which host runs on which, and whether the cluster has formed."""

    expected: int
    timeout: float
    selector: str
    pods: dict[str, Pod] = field(default_factory=dict)
    host_pods: dict[str, str] = field(default_factory=dict)  # host id -> pod name
    formed: bool = False
    started: float = field(default_factory=time.monotonic)
    _logged: float = 0.0

    def seen(self, pod: Pod) -> None:
        if pod.gone:
            self.pods.pop(pod.name, None)
        else:
            self.pods[pod.name] = pod

    def pod_of(self, host_id: str, address: str) -> str | None:
        """The pod a host runs on: recorded once found among the pods not leaving."""
        name = self.host_pods.get(host_id)
        if name is None:
            ip = ip_of(address)
            name = next((p.name for p in self.pods.values() if p.ip == ip and not p.leaving), None)
            if name is not None:
                self.host_pods[host_id] = name
        return name

    def hosts_on(self, pod: Pod, hosts: dict[str, str]) -> list[str]:
        """The hosts (of ``hosts``: id -> address) that run on ``pod``."""
        return [h for h, address in hosts.items() if self.pod_of(h, address) == pod.name]

    def forget(self, host_ids: Iterable[str]) -> None:
        for host_id in host_ids:
            self.host_pods.pop(host_id, None)

    def check_formed(self, hosts: dict[str, str]) -> bool:
        """Whether the first assignment may go ahead (it stays so once it is)."""
        if self.formed:
            return True
        ready = sorted(
            {
                pod
                for h, address in hosts.items()
                if (pod := self.pod_of(h, address)) is not None
                and self.pods[pod].running
                and not self.pods[pod].leaving
            }
        )
        waited = time.monotonic() - self.started
        if len(ready) >= self.expected:
            log.info(
                "cluster formed: %d of %d %s run a host (%s) after %.1f s",
                len(ready),
                self.expected,
                self.selector,
                ", ".join(ready),
                waited,
            )
            self.formed = True
        elif waited >= self.timeout:
            log.warning(
                "only %d of %d %s run a host after %.0f s (COS_KUBERNETES_FORMATION_TIMEOUT"
                "_SECONDS): assigning the shards to the %d hosts there are",
                len(ready),
                self.expected,
                self.selector,
                waited,
                len(hosts),
            )
            self.formed = True
        elif time.monotonic() - self._logged >= _WAITING_LOG_INTERVAL:
            self._logged = time.monotonic()
            log.info(
                "waiting for %d %s to run a host before assigning shards: %d so far (%s)",
                self.expected,
                self.selector,
                len(ready),
                ", ".join(ready) or "none",
            )
        return self.formed
