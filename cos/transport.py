"""gRPC between the runtime and its handlers and peer hosts: channels opened one way,
the metadata keys of the hop between hosts, and one translation of a failed call into
a domain error (``cos.errors``).

gRPC backs off between reconnection attempts (by default from 1 s, growing to 120 s),
and while it waits every call on the channel fails at once with ``UNAVAILABLE``. A
handler that comes back after an outage would then look down for up to two minutes.
Channels here back off for at most :data:`MAX_RECONNECT_BACKOFF_MS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from cos.errors import CosError, HandlerCallError, HostUnreachableError, ShardNotOwnedError

MAX_RECONNECT_BACKOFF_MS = 1000
# gRPC's own default, and COS_MAX_MESSAGE_BYTES's.
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024

# Set on a call forwarded to the owner host: the receiver serves it locally or says
# "not owner", never forwards again, so a stale routing table cannot make a loop.
FORWARDED = "x-cos-forwarded"
# Trailer of an UNAVAILABLE that means "this host does not own the shard": the command
# was not run, so the forwarder may safely try the next owner.
NOT_OWNER = "x-cos-not-owner"
# Rich error details a handler attaches travel in this trailer; they are passed on as is.
DETAILS_KEY = "grpc-status-details-bin"

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


def call_error(
    error: grpc.aio.AioRpcError, peer: str, *, deadline_note: str = "", host: bool = False
) -> CosError:
    """The domain error for a failed call to ``peer`` (a phrase: "write handler at h:p").

    From a peer ``host``, a "not owner" answer and a call that never connected say the
    command did not run (:class:`ShardNotOwnedError`, :class:`HostUnreachableError`), so
    the router may try again. A peer host that cancelled the call (it stopped while the
    command ran) is ``UNAVAILABLE`` to our caller, as a connection lost mid-call is: the
    client retries, and cannot tell whether the command was applied either way. Anything
    else is passed on with the peer's own status, message and details. ``deadline_note``
    words our own deadline when it expired.
    """
    trailers = error.trailing_metadata() or ()
    details = next((bytes(v) for k, v in trailers if k == DETAILS_KEY), None)
    code, message = error.code(), error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and details is None:
        if host and any(key == NOT_OWNER for key, _ in trailers):
            return ShardNotOwnedError(f"{peer} does not serve the shard: {message}")
        if not_connected(error):
            if host:
                return HostUnreachableError(f"{peer} is unreachable: {message}")
            message = f"{peer} is unavailable: {message}"
    if code == grpc.StatusCode.CANCELLED and host:
        return HandlerCallError(
            "UNAVAILABLE", f"{peer} stopped before it answered (the command may have run)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and details is None and deadline_note:
        message = f"{peer} did not answer {deadline_note}"
    return HandlerCallError(code.name, message, details)
