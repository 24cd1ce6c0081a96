"""One mapping from a failed call to the gRPC status its caller sees, for every servicer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import grpc

from cos.errors import CosError, HandlerCallError, ShardNotOwnedError
from cos.sharding.forward import NOT_OWNER

log = logging.getLogger(__name__)
T = TypeVar("T")


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """Abort the call: a CosError with its own code, anything else as INTERNAL (logged)."""
    if isinstance(exc, HandlerCallError):
        await context.abort(exc.code, str(exc), trailing_metadata=exc.trailing_metadata)
    if isinstance(exc, ShardNotOwnedError):
        await context.abort(exc.code, str(exc), trailing_metadata=((NOT_OWNER, "1"),))
    if isinstance(exc, CosError):
        await context.abort(exc.code, str(exc))
    log.exception("%s failed", method)
    await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed: {type(exc).__name__}: {exc}")


async def answer(context: grpc.aio.ServicerContext, call: Awaitable[T], method: str) -> T:
    """The result of ``call``, or the call aborted with the status of its failure."""
    try:
        return await call
    except Exception as exc:
        await abort_with(context, exc, method)
    raise AssertionError("unreachable")  # context.abort raises
