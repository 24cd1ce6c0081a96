"""The write handler's circuit breaker (COS_WRITE_SIDE_BREAKER_*), against a real
handler process that fails on request."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from tests.support.commands import request
from tests.support.runtimes import StartRuntime


async def status_of(cos: object, entity_id: str, **fields: object) -> tuple[str, str]:
    stub = cos.stub  # type: ignore[attr-defined]
    try:
        await stub.ProcessCommand(request(entity_id, **fields), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


async def test_the_breaker_opens_on_an_unwell_handler_only_and_closes_after_the_reset(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(
        write_side_breaker_enabled=True,
        write_side_breaker_max_failures=3,
        write_side_breaker_reset_timeout="2s",
    )
    # Business answers say the handler is well: they never open the breaker.
    for _ in range(5):
        code, _ = await status_of(cos, "b-1", fail="FAILED_PRECONDITION", message="no")
        assert code == "FAILED_PRECONDITION"
    assert (await status_of(cos, "b-1", add=[1]))[0] == "OK"
    for _ in range(3):
        assert (await status_of(cos, "b-1", fail="INTERNAL", message="crashed"))[0] == "INTERNAL"
    # Open: a good command fails at once, without reaching the handler.
    started = time.monotonic()
    code, message = await status_of(cos, "b-2", add=[1])
    assert code == "UNAVAILABLE" and "circuit breaker of the write handler" in message, message
    assert "3 failed calls in a row" in message
    await asyncio.sleep(2.2)
    assert (await status_of(cos, "b-2", add=[1]))[0] == "OK", "still open after the reset"
    assert time.monotonic() - started > 2.0


async def test_the_breaker_call_timeout_bounds_each_handler_call(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos(write_side_breaker_enabled=True, write_side_breaker_call_timeout="300ms")
    code, message = await status_of(cos, "slow", sleep=1.0)
    assert code == "DEADLINE_EXCEEDED"
    assert "COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT" in message and "300 ms" in message, message


async def test_without_the_breaker_failures_never_block_good_commands(
    start_cos: StartRuntime,
) -> None:
    cos = await start_cos()
    for _ in range(8):
        assert (await status_of(cos, "nb", fail="UNAVAILABLE", message="down"))[0] == "UNAVAILABLE"
    assert (await status_of(cos, "nb", add=[1]))[0] == "OK"


@pytest.mark.parametrize("value", ["0", "-1s", "soon"])
async def test_a_bad_duration_is_refused(start_cos: StartRuntime, value: str) -> None:
    with pytest.raises(ValueError, match="COS_WRITE_SIDE_BREAKER_RESET_TIMEOUT"):
        await start_cos(write_side_breaker_reset_timeout=value)
