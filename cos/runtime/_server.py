"""The gRPC servers of a node, built one way: the node's own on ``COS_PORT`` and its
subscription process's on ``COS_SUBSCRIPTION_PORT``."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from cos.errors import PortInUseError
from cos.service import RefuseUndecodable
from cos.tls import TlsFiles, bind_server
from cos.transport import message_limits


def new_server(
    *, max_message: int, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
) -> grpc.aio.Server:
    """A server whose messages are capped at ``max_message`` bytes both ways, and which
    refuses a request that does not decode (``INVALID_ARGUMENT``) before ``interceptors``."""
    # so_reuseport off: a second server on the same port must fail, not share it.
    options = [("grpc.so_reuseport", 0), *message_limits(max_message)]
    return grpc.aio.server(options=options, interceptors=[RefuseUndecodable(), *interceptors])


def bind(
    server: grpc.aio.Server,
    host: str,
    port: int,
    tls: TlsFiles | None,
    *,
    setting: str = "COS_PORT",
) -> str:
    """Bind ``host:port`` (with TLS when ``tls`` is set) and return the address; raises
    :class:`PortInUseError` naming ``setting`` when the port is taken."""
    address = f"{host}:{port}"
    if not bind_server(server, address, tls):
        raise PortInUseError.at(host, port, setting=setting)
    return address


def tls_words(tls: TlsFiles | None) -> str:
    """How a server's TLS is said in its log line."""
    if tls is None:
        return ""
    return " (mutual TLS)" if tls.mutual else " (TLS)"
