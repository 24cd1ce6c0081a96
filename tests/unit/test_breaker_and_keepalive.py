"""What counts against a circuit breaker, and the keepalive channel options."""

from __future__ import annotations

import asyncio

import pytest

from cos.breaker import Breaker, BreakerOpenError, BreakerSettings
from cos.errors import HandlerCallError
from cos.settings import load_settings

REQUIRED = {"COS_WRITE_SIDE_HOST": "handler", "COS_WRITE_SIDE_PORT": "50051"}


async def fails(status: str) -> None:
    raise HandlerCallError(status, "answer")


async def ok() -> str:
    return "ok"


async def test_only_unwell_answers_count_and_a_success_starts_the_count_again() -> None:
    breaker = Breaker(
        BreakerSettings(enabled=True, max_failures=2, call_timeout="1s", reset_timeout="60s"),
        "write handler at h:1",
    )
    for status in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND", "UNAVAILABLE"):
        with pytest.raises(HandlerCallError):
            await breaker.call(lambda s=status: fails(s))  # type: ignore[misc]
    assert await breaker.call(ok) == "ok"  # one unwell answer, then a success: closed
    with pytest.raises(asyncio.CancelledError):  # the caller gave up: says nothing
        await breaker.call(_cancelled)
    with pytest.raises(HandlerCallError):
        await breaker.call(lambda: fails("UNKNOWN"))
    assert await breaker.call(ok) == "ok"
    for _ in range(2):
        with pytest.raises(HandlerCallError):
            await breaker.call(lambda: fails("DEADLINE_EXCEEDED"))
    with pytest.raises(BreakerOpenError, match="write handler at h:1 is open after 2 failed"):
        await breaker.call(ok)


async def _cancelled() -> None:
    raise asyncio.CancelledError


async def test_a_disabled_breaker_never_opens_nor_shortens_calls() -> None:
    breaker = Breaker(
        BreakerSettings(enabled=False, max_failures=1, call_timeout="100ms", reset_timeout="60s"),
        "write handler",
    )
    for _ in range(3):
        with pytest.raises(HandlerCallError):
            await breaker.call(lambda: fails("INTERNAL"))
    assert await breaker.call(ok) == "ok"
    assert breaker.timeout(5.0) == 5.0
    assert (
        Breaker(
            BreakerSettings(
                enabled=True, max_failures=1, call_timeout="100ms", reset_timeout="60s"
            ),
            "h",
        ).timeout(5.0)
        == 0.1
    )


def test_keepalive_is_off_by_default_and_follows_chief_of_state_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    options = dict(load_settings().grpc.options())
    assert "grpc.keepalive_time_ms" not in options
    monkeypatch.setenv("COS_GRPC_KEEPALIVE_ENABLED", "true")
    monkeypatch.setenv("COS_GRPC_KEEPALIVE_TIME", "30s")
    monkeypatch.setenv("COS_GRPC_KEEPALIVE_TIMEOUT", "5000")  # a bare number is ms
    monkeypatch.setenv("COS_GRPC_KEEPALIVE_WITHOUT_CALLS", "false")
    options = dict(load_settings().grpc.options())
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.keepalive_permit_without_calls"] == 0
