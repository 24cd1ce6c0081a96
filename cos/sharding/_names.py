"""The names of a runtime's Ray actors, in one place.

Every actor lives in the :data:`NAMESPACE` namespace and is named after its runtime
(``COS_CLUSTER_NAME``), so runtimes sharing a Ray cluster never see each other's.
"""

from __future__ import annotations

NAMESPACE = "cos"
# A Ray node label naming the gRPC port of that node's host (several nodes, one machine).
PORT_LABEL = "cos-port"
# The same for the HTTP/JSON API's port (COS_HTTP_PORT).
HTTP_PORT_LABEL = "cos-http-port"
# And for the subscription process's port (COS_SUBSCRIPTION_PORT).
SUBSCRIPTION_PORT_LABEL = "cos-subscription-port"


def coordinator_name(cluster: str) -> str:
    """The runtime's one coordinator."""
    return f"{cluster}-coordinator"


def host_prefix(cluster: str) -> str:
    """What the name of every shard host of the runtime starts with."""
    return f"{cluster}-host-"


def host_name(cluster: str, node_id: str) -> str:
    """The shard host of a Ray node: one per node, so a second one is refused."""
    return f"{host_prefix(cluster)}{node_id[:12]}"
