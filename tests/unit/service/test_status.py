"""Domain errors to gRPC statuses, and failed calls back to domain errors (pure)."""

from __future__ import annotations

import grpc
import pytest

from cos.errors import (
    ConflictError,
    CosError,
    FencedError,
    HandlerCallError,
    HandlerReplyError,
    HostUnreachableError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    JournalUnavailableError,
    NotFoundError,
    RevisionMismatchError,
    ShardNotOwnedError,
)
from cos.status import DETAILS_KEY, NOT_OWNER, call_error, status_of

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequestError("x"), Code.INVALID_ARGUMENT),
        (NotFoundError("x"), Code.NOT_FOUND),
        (HandlerReplyError("x"), Code.INTERNAL),
        (ConflictError("x"), Code.ABORTED),
        (IdempotencyKeyReusedError("x"), Code.ALREADY_EXISTS),
        (RevisionMismatchError("x"), Code.FAILED_PRECONDITION),
        (FencedError("x"), Code.UNAVAILABLE),
        (JournalUnavailableError("x"), Code.UNAVAILABLE),
        (HostUnreachableError("x"), Code.UNAVAILABLE),
        (CosError("x"), Code.INTERNAL),
    ],
)
def test_each_error_has_its_code(error: CosError, code: grpc.StatusCode) -> None:
    assert status_of(error) == (code, ())


def test_a_handler_error_keeps_its_status_and_details() -> None:
    error = HandlerCallError("FAILED_PRECONDITION", "balance too low", b"\x08\x09")
    assert status_of(error) == (Code.FAILED_PRECONDITION, ((DETAILS_KEY, b"\x08\x09"),))


def test_not_owner_is_unavailable_with_its_trailer() -> None:
    assert status_of(ShardNotOwnedError("moved")) == (Code.UNAVAILABLE, ((NOT_OWNER, "1"),))


def rpc_error(
    code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str | bytes], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)


REFUSED = "failed to connect to all addresses; last error: Connection refused"


def test_a_host_that_never_answered_or_does_not_own_the_shard_can_be_retried() -> None:
    assert isinstance(
        call_error(rpc_error(Code.UNAVAILABLE, REFUSED), "host at h:1", host=True),
        HostUnreachableError,
    )
    not_owner = rpc_error(Code.UNAVAILABLE, "moved", ((NOT_OWNER, "1"),))
    assert isinstance(call_error(not_owner, "host at h:1", host=True), ShardNotOwnedError)


def test_other_failures_pass_on_with_the_peers_status_and_details() -> None:
    failed = rpc_error(Code.FAILED_PRECONDITION, "no", ((DETAILS_KEY, b"\x01"),))
    error = call_error(failed, "host at h:1", host=True)
    assert isinstance(error, HandlerCallError)
    assert (error.status, str(error), error.details) == ("FAILED_PRECONDITION", "no", b"\x01")
    # Reset mid-call: it may have run there, so it is not one to retry.
    reset = call_error(rpc_error(Code.UNAVAILABLE, "Socket closed"), "host at h:1", host=True)
    assert isinstance(reset, HandlerCallError) and reset.status == "UNAVAILABLE"
    # A host that stopped mid-call cancels it: the client sees UNAVAILABLE, which it retries.
    stopped = call_error(rpc_error(Code.CANCELLED, "Cancelled"), "host at h:1", host=True)
    assert isinstance(stopped, HandlerCallError) and stopped.status == "UNAVAILABLE"
    assert str(stopped) == "host at h:1 stopped before it answered (the command may have run)"
    # From a handler, CANCELLED stays what it is.
    cancelled = call_error(rpc_error(Code.CANCELLED, "Cancelled"), "write handler at h:1")
    assert isinstance(cancelled, HandlerCallError) and cancelled.status == "CANCELLED"


def test_a_write_handler_error_names_the_handler_and_our_deadline() -> None:
    down = call_error(rpc_error(Code.UNAVAILABLE, REFUSED), "write handler at h:1")
    assert isinstance(down, HandlerCallError)
    assert str(down).startswith("write handler at h:1 is unavailable: failed to connect")
    late = call_error(
        rpc_error(Code.DEADLINE_EXCEEDED, "Deadline Exceeded"),
        "write handler at h:1",
        deadline_note="HandleCommand within 300 ms (COS_COMMAND_HANDLER_TIMEOUT)",
    )
    assert str(late) == (
        "write handler at h:1 did not answer HandleCommand within 300 ms"
        " (COS_COMMAND_HANDLER_TIMEOUT)"
    )
