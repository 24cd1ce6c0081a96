"""gRPC servicers: translate protos to domain calls and errors to status codes.

What others use: :func:`add_node_services` (every service of a node's port) and
:func:`add_subscription_service` (the subscription process's one), the server
interceptors that refuse undecodable requests and guard the operator API, the node's
health, and the operator token's local file.
"""

from cos.service.decoding import RefuseUndecodable
from cos.service.health import NodeHealth
from cos.service.operator_auth import LOCAL_TOKEN_FILE, OperatorGate, OperatorSettings
from cos.service.services import add_node_services, add_subscription_service

__all__ = [
    "LOCAL_TOKEN_FILE",
    "NodeHealth",
    "OperatorGate",
    "OperatorSettings",
    "RefuseUndecodable",
    "add_node_services",
    "add_subscription_service",
]
