"""A servicer call answered with the status of its failure (``cos.status``, the one
converter)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from cos.status import failure_of

T = TypeVar("T")


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """Abort the call with the status of its failure (:func:`cos.status.failure_of`)."""
    code, message, trailers = failure_of(exc, method)
    await context.abort(code, message, trailing_metadata=trailers)


async def answer(context: grpc.aio.ServicerContext, call: Awaitable[T], method: str) -> T:
    """The result of ``call``, or the call aborted with the status of its failure."""
    try:
        return await call
    except Exception as exc:
        await abort_with(context, exc, method)
    raise AssertionError("unreachable")  # context.abort raises
