"""The one converter between the runtime's errors and gRPC statuses, both ways.

Every protocol answers a failure through :func:`failure_of` (the gRPC servicers, the
HTTP/JSON API, the telemetry that records a call's code), and every failed call to a
handler or a peer host becomes a domain error through :func:`call_error`. ``cos.errors``
knows nothing of gRPC; this module is where the two meet.
"""

from __future__ import annotations

import logging
import re

import grpc

from cos.errors import (
    ConflictError,
    CosError,
    DeadlineExceededError,
    HandlerCallError,
    HandlerReplyError,
    HistoryDeletedError,
    HostUnreachableError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    JournalRejectedError,
    NotFoundError,
    NotWrittenError,
    OutOfRangeError,
    RevisionMismatchError,
    ShardNotOwnedError,
    TooLargeError,
    UnavailableError,
)
from cos.transport import not_connected

log = logging.getLogger(__name__)

# Trailer of an UNAVAILABLE that means "nothing of the command was written here", so the
# forwarder may safely try again: "1", this host does not own the shard (try the next
# owner); "not-written", it ran on events of its entity that failed to be journaled.
NOT_OWNER = "x-cos-not-owner"
_NOT_WRITTEN = "not-written"
# Rich error details a handler attaches travel in this trailer; they are passed on as is.
DETAILS_KEY = "grpc-status-details-bin"
# gRPC's own words for a message over a channel's limit (COS_MAX_MESSAGE_BYTES), one way
# or the other: "Received message larger than max (5242943 vs. 4194304)".
_OVER_LIMIT = re.compile(r"(Received|Sent) message larger than max \((\d+) vs\. (\d+)\)")

# The status of each kind of domain error; a subclass takes its nearest ancestor's.
CODES: dict[type[CosError], grpc.StatusCode] = {
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    OutOfRangeError: grpc.StatusCode.OUT_OF_RANGE,
    HistoryDeletedError: grpc.StatusCode.FAILED_PRECONDITION,
    HandlerReplyError: grpc.StatusCode.INTERNAL,
    ConflictError: grpc.StatusCode.ABORTED,
    IdempotencyKeyReusedError: grpc.StatusCode.ALREADY_EXISTS,
    RevisionMismatchError: grpc.StatusCode.FAILED_PRECONDITION,
    JournalRejectedError: grpc.StatusCode.INTERNAL,
    TooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    CosError: grpc.StatusCode.INTERNAL,
}

Trailers = tuple[tuple[str, str | bytes], ...]


def status_of(error: CosError) -> tuple[grpc.StatusCode, Trailers]:
    """The code and trailing metadata a domain error is answered with."""
    if isinstance(error, HandlerCallError):
        details: Trailers = ((DETAILS_KEY, error.details),) if error.details else ()
        return grpc.StatusCode[error.status], details
    if isinstance(error, ShardNotOwnedError):
        return CODES[UnavailableError], ((NOT_OWNER, "1"),)
    if isinstance(error, NotWrittenError):
        return CODES[UnavailableError], ((NOT_OWNER, _NOT_WRITTEN),)
    code = next(CODES[kind] for kind in type(error).__mro__ if kind in CODES)
    return code, ()


def failure_of(exc: Exception, method: str) -> tuple[grpc.StatusCode, str, Trailers]:
    """The code, message and trailers a failed call is answered with, whatever the
    protocol: a CosError's own status, anything else INTERNAL (logged)."""
    if isinstance(exc, CosError):
        code, trailers = status_of(exc)
        return code, str(exc), trailers
    log.error("%s failed", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"{method} failed: {type(exc).__name__}: {exc}", ()


def call_error(
    error: grpc.aio.AioRpcError,
    peer: str,
    *,
    deadline_note: str = "",
    host: bool = False,
    method: str = "",
) -> CosError:
    """The domain error for a failed call to ``peer`` (a phrase: "write handler at h:p").

    From a peer ``host``, a "not owner" answer and a call that never connected say the
    command did not run (:class:`ShardNotOwnedError`, :class:`HostUnreachableError`), so
    the router may try again. A peer host that cancelled the call (it stopped while the
    command ran) is ``UNAVAILABLE`` to our caller, as a connection lost mid-call is: the
    client retries, and cannot tell whether the command was applied either way. Anything
    else is passed on with the peer's own status, message and details, except a message
    over the channel's limit, which says so and names ``COS_MAX_MESSAGE_BYTES`` (gRPC's
    own words do neither). ``deadline_note`` words our own deadline when it expired;
    ``method`` names the call in those messages.
    """
    trailers = error.trailing_metadata() or ()
    details = next((bytes(v) for k, v in trailers if k == DETAILS_KEY), None)
    code, message = error.code(), error.details() or ""
    over = _OVER_LIMIT.search(message) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
    if over is not None and details is None:
        call = f"{method} " if method else ""
        way = "reply of" if over[1] == "Received" else "request to"
        what = f"the {call}{way} the {peer}"
        return TooLargeError(
            f"{what} is {over[2]} bytes; the largest message is {over[3]} bytes"
            " (COS_MAX_MESSAGE_BYTES)"
        )
    if code == grpc.StatusCode.UNAVAILABLE and details is None:
        said = next((value for key, value in trailers if key == NOT_OWNER), None)
        if host and said == _NOT_WRITTEN:
            return NotWrittenError(f"{peer}: {message}")
        if host and said is not None:
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
