"""Ownership of shards: which host serves each shard (the coordinator and its placement,
the lease keeper without it, Kubernetes formation), and the routing of every command to
the host that owns its shard (the shard host, the forward hop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.sharding._coordinator import Coordinator
    from cos.sharding._formation import Pod, PodSeen, PodSource
    from cos.sharding._forward import PeerClients
    from cos.sharding._handles import CoordinatorHandle, Routes
    from cos.sharding._host import Peers, Route, ShardEvents, ShardHost
    from cos.sharding._keeper import LeaseKeeper
    from cos.sharding._names import (
        HTTP_PORT_LABEL,
        NAMESPACE,
        PORT_LABEL,
        SUBSCRIPTION_PORT_LABEL,
        coordinator_name,
        host_name,
        host_prefix,
    )
    from cos.sharding._report import HostHealth, ShardInfo, ShardReport, host_health
    from cos.sharding._routing import shard_of
    from cos.sharding._settings import ClusterSettings

__all__ = [
    "HTTP_PORT_LABEL",
    "NAMESPACE",
    "PORT_LABEL",
    "SUBSCRIPTION_PORT_LABEL",
    "ClusterSettings",
    "Coordinator",
    "CoordinatorHandle",
    "HostHealth",
    "LeaseKeeper",
    "PeerClients",
    "Peers",
    "Pod",
    "PodSeen",
    "PodSource",
    "Route",
    "Routes",
    "ShardEvents",
    "ShardHost",
    "ShardInfo",
    "ShardReport",
    "coordinator_name",
    "host_health",
    "host_name",
    "host_prefix",
    "shard_of",
]

__getattr__ = lazy_exports(__name__)
