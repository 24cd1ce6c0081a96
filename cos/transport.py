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

import grpc
from pydantic import Field

from cos.config import Duration, Part

MAX_RECONNECT_BACKOFF_MS = 1000
# gRPC's own default, and COS_MAX_MESSAGE_BYTES's.
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024

# A call's metadata (request headers): keys lower case, ``-bin`` keys with bytes.
Metadata = Sequence[tuple[str, str | bytes]]

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


class GrpcSettings(Part):
    """What every gRPC channel and call to a handler or a peer shares: the largest message
    (the server's limit too), a handler call's deadline, and HTTP/2 keepalive pings (none
    unless turned on, as in Chief of State): a connection whose ping goes unanswered for
    ``keepalive_timeout`` is closed, so a silently dead peer is noticed."""

    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE,
        ge=64 * 1024,
        description="largest gRPC message in bytes: requests, replies, handler calls, an"
        " event with its state",
    )
    call_timeout_ms: int = Field(
        60_000,
        gt=0,
        alias="COS_GRPC_CALLS_TIMEOUT",
        description="deadline of one handler call (write, and read without its own), in ms",
    )
    keepalive_enabled: bool = Field(
        False,
        alias="COS_GRPC_KEEPALIVE_ENABLED",
        description="HTTP/2 keepalive pings on the channels to handlers and peers",
    )
    keepalive_time: Duration = Field(
        "120s",
        gt=0,
        validate_default=True,
        alias="COS_GRPC_KEEPALIVE_TIME",
        description="time between keepalive pings (120s)",
    )
    keepalive_timeout: Duration = Field(
        "60s",
        gt=0,
        validate_default=True,
        alias="COS_GRPC_KEEPALIVE_TIMEOUT",
        description="how long a ping may go unanswered before the connection closes",
    )
    keepalive_without_calls: bool = Field(
        True,
        alias="COS_GRPC_KEEPALIVE_WITHOUT_CALLS",
        description="ping also while no call is in flight",
    )

    def options(self) -> list[ChannelOption]:
        """The options of a channel to a handler or a peer."""
        return [*_OPTIONS, *message_limits(self.max_message_bytes), *self._pings()]

    def _pings(self) -> list[ChannelOption]:
        if not self.keepalive_enabled:
            return []
        return [
            ("grpc.keepalive_time_ms", round(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_without_calls)),
            ("grpc.http2.max_pings_without_data", 0),  # no cap on pings between calls
        ]


DEFAULT_GRPC = GrpcSettings()


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
    settings: GrpcSettings = DEFAULT_GRPC,
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
