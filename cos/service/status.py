"""One mapping from a failed call to the gRPC status its caller sees, for every servicer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import grpc

from cos.errors import (
    ConflictError,
    CosError,
    DeadlineExceededError,
    HandlerCallError,
    HandlerReplyError,
    HistoryDeletedError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    JournalRejectedError,
    NotFoundError,
    OutOfRangeError,
    RevisionMismatchError,
    ShardNotOwnedError,
    TooLargeError,
    UnavailableError,
)
from cos.transport import DETAILS_KEY, NOT_OWNER

log = logging.getLogger(__name__)
T = TypeVar("T")

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


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """Abort the call with the status of its failure (:func:`failure_of`)."""
    code, message, trailers = failure_of(exc, method)
    await context.abort(code, message, trailing_metadata=trailers)


async def answer(context: grpc.aio.ServicerContext, call: Awaitable[T], method: str) -> T:
    """The result of ``call``, or the call aborted with the status of its failure."""
    try:
        return await call
    except Exception as exc:
        await abort_with(context, exc, method)
    raise AssertionError("unreachable")  # context.abort raises
