"""gRPC channels between the runtime and its handlers and peer hosts, opened one way, and
the header that marks the hop between hosts. (Failed calls become domain errors, and
domain errors statuses, in ``cos.status``.)

gRPC backs off between reconnection attempts (by default from 1 s, growing to 120 s),
and while it waits every call on the channel fails at once with ``UNAVAILABLE``. A
handler that comes back after an outage would then look down for up to two minutes.
Channels here back off for at most :data:`MAX_RECONNECT_BACKOFF_MS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

MAX_RECONNECT_BACKOFF_MS = 1000
# gRPC's own default, and COS_MAX_MESSAGE_BYTES's.
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024

# Set on a call forwarded to the owner host: the receiver serves it locally or says
# "not owner", never forwards again, so a stale routing table cannot make a loop.
FORWARDED = "x-cos-forwarded"
ChannelOption = tuple[str, int | str]
_OPTIONS: Sequence[ChannelOption] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    # Connections (subchannels) are otherwise shared by every channel to a target,
    # with their backoff: a new channel must be able to start afresh.
    ("grpc.use_local_subchannel_pool", 1),
)


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 keepalive pings (``COS_GRPC_KEEPALIVE_*``, in seconds): a connection whose
    ping goes unanswered for ``timeout`` is closed, so a silently dead peer is noticed."""

    time: float
    timeout: float
    without_calls: bool

    def options(self) -> list[ChannelOption]:
        """The channel options that turn the pings on."""
        return [
            ("grpc.keepalive_time_ms", round(self.time * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.without_calls)),
            ("grpc.http2.max_pings_without_data", 0),  # no cap on pings between calls
        ]


@dataclass(frozen=True)
class ChannelSettings:
    """What every channel to a handler or a peer shares: the largest message and the
    keepalive pings (none unless turned on, as in Chief of State)."""

    max_message: int = DEFAULT_MAX_MESSAGE
    keepalive: Keepalive | None = None

    def options(self) -> list[ChannelOption]:
        """The channel options these settings make."""
        pings = self.keepalive.options() if self.keepalive else []
        return [*_OPTIONS, *message_limits(self.max_message), *pings]


DEFAULT_CHANNELS = ChannelSettings()


def message_limits(max_message: int) -> list[ChannelOption]:
    """The options that cap messages both ways at ``max_message`` bytes."""
    return [
        ("grpc.max_receive_message_length", max_message),
        ("grpc.max_send_message_length", max_message),
    ]


def open_channel(
    target: str,
    *,
    tls: bool = False,
    root_certificates: bytes | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str | None = None,
    settings: ChannelSettings = DEFAULT_CHANNELS,
) -> grpc.aio.Channel:
    """An aio channel to ``target`` (``host:port``); TLS with ``credentials``, or with
    ``root_certificates`` or the system roots when ``tls``. ``server_name`` is the name
    the peer's certificate is checked against instead of the target's host. Open it in
    the event loop that will use it."""
    options = settings.options()
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    if tls and credentials is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options)
    return grpc.aio.insecure_channel(target, options=options)


def not_connected(error: grpc.aio.AioRpcError) -> bool:
    """True when the call failed for want of a connection, so it surely never reached
    the peer (gRPC words it "failed to connect ..." or "Connection refused")."""
    if error.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    details = (error.details() or "").lower()
    return "failed to connect" in details or "connection refused" in details
