"""Circuit breakers on the calls to the handlers, as Chief of State's main branch names
them (``COS_WRITE_SIDE_BREAKER_*``, ``COS_READ_SIDE_BREAKER_*``), from ``purgatory``.

After ``max_failures`` calls in a row fail because the handler is unwell (unreachable,
too slow, crashed), the breaker opens: calls fail at once with ``UNAVAILABLE`` for
``reset_timeout``, sparing a struggling handler the load and callers the wait. Then
calls go through again; the first failure opens it again, the first success closes it.
A handler's business answers (``INVALID_ARGUMENT``, ``FAILED_PRECONDITION``…) say the
handler is well and never count; nor does a caller that gave up. Chief of State answers
``INTERNAL`` while open; ``UNAVAILABLE`` tells clients, rightly, to retry later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from pydantic import Field

from cos.config import Duration, Part
from cos.errors import HandlerCallError, UnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Status codes of a call that say the handler, not the request, is the problem.
UNWELL = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL", "UNIMPLEMENTED", "DATA_LOSS"}
)


class BreakerOpenError(UnavailableError):
    """The handler's circuit breaker is open: the call was not made."""


class BreakerSettings(Part):
    """The write handler's breaker (``COS_WRITE_SIDE_BREAKER_*``); durations in seconds."""

    env_prefix = "COS_WRITE_SIDE_BREAKER_"

    enabled: bool = Field(
        False, description="circuit breaker on the handler (as CoS's main branch)"
    )
    max_failures: int = Field(
        5, gt=0, description="failed handler calls in a row that open the breaker"
    )
    call_timeout: Duration = Field(
        "60s",
        gt=0,
        validate_default=True,
        description="deadline of a handler call under the breaker (60s, 500ms)",
    )
    reset_timeout: Duration = Field(
        "1m",
        gt=0,
        validate_default=True,
        description="how long an open breaker fails calls at once",
    )


class ReadSideBreakerSettings(BreakerSettings):
    """Each read handler's breaker (``COS_READ_SIDE_BREAKER_*``): a shorter call timeout."""

    env_prefix = "COS_READ_SIDE_BREAKER_"

    call_timeout: Duration = Field(
        "10s",
        gt=0,
        validate_default=True,
        description="deadline of a read handler call under the breaker",
    )


NO_BREAKER = BreakerSettings()


def _business_answer(error: BaseException) -> bool:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code().name not in UNWELL
    return isinstance(error, HandlerCallError) and error.status not in UNWELL


class Breaker:
    """A circuit breaker around the calls to one handler (named in its errors)."""

    def __init__(self, settings: BreakerSettings, handler: str) -> None:
        self.settings = settings
        self._handler = handler
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=settings.max_failures,
            default_ttl=settings.reset_timeout,
            exclude=[
                (HandlerCallError, _business_answer),
                (grpc.aio.AioRpcError, _business_answer),
                asyncio.CancelledError,
            ],
        )
        self._factory.add_listener(self._log_change)

    def timeout(self, timeout: float) -> float:
        """The deadline of a call: the breaker's call timeout when that is shorter."""
        return min(timeout, self.settings.call_timeout) if self.settings.enabled else timeout

    async def call(self, call: Callable[[], Awaitable[T]]) -> T:
        """Make ``call`` unless the breaker is open (:class:`BreakerOpenError`)."""
        if not self.settings.enabled:
            return await call()
        breaker = await self._factory.get_breaker(self._handler)
        try:
            async with breaker:
                return await call()
        except OpenedState:
            raise BreakerOpenError(
                f"the circuit breaker of the {self._handler} is open after"
                f" {self.settings.max_failures} failed calls in a row; calls resume within"
                f" {self.settings.reset_timeout:g} s"
            ) from None

    def _log_change(self, name: str, event_name: str, event: object) -> None:
        if event_name != "state_changed":
            return
        state = getattr(event, "state", "?")
        if state == "opened":
            log.warning(
                "circuit breaker of the %s opened: calls fail at once for %g s",
                name,
                self.settings.reset_timeout,
            )
        elif state == "closed":
            log.info("circuit breaker of the %s closed: the handler answers again", name)
