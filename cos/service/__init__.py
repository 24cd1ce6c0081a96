"""gRPC servicers: translate protos to domain calls and errors to status codes.

What others use: :func:`add_node_services` (every service of a node's port) and
:func:`add_subscription_service` (the subscription process's one), the server
interceptors that refuse undecodable requests and guard the operator API, the node's
health, and the operator token's local file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.service._decoding import RefuseUndecodable
    from cos.service._health import NodeHealth
    from cos.service._operator_auth import LOCAL_TOKEN_FILE, OperatorGate, OperatorSettings
    from cos.service._services import add_node_services, add_subscription_service

__all__ = [
    "LOCAL_TOKEN_FILE",
    "NodeHealth",
    "OperatorGate",
    "OperatorSettings",
    "RefuseUndecodable",
    "add_node_services",
    "add_subscription_service",
]

__getattr__ = lazy_exports(__name__)
