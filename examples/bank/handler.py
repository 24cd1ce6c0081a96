"""Write handler of the bank example: chief_of_state.v1.WriteSideHandlerService over grpc.aio.

Usage: python examples/bank/handler.py [--host 127.0.0.1] [--port 50051]

Prints `bank write handler listening on HOST:PORT` once serving (with `--port 0` the
port the OS chose) and stops on SIGTERM or SIGINT. The rules live in domain.py; this
module only translates protobuf <-> domain values and domain errors <-> gRPC statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn, TypeVar

EXAMPLE_DIR = Path(__file__).resolve().parent
# The generated bank.v1 package and domain.py live beside this script, not in site-packages.
sys.path[:0] = [str(EXAMPLE_DIR / "gen"), str(EXAMPLE_DIR)]

import domain  # noqa: E402
import grpc  # noqa: E402
from bank.v1 import bank_pb2  # noqa: E402
from google.protobuf import any_pb2, empty_pb2, message  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

from chief_of_state.v1 import writeside_pb2, writeside_pb2_grpc  # noqa: E402

logger = logging.getLogger("bank.handler")

ERROR_DOMAIN = "bank.example"
GRACE_SECONDS = 5.0

_M = TypeVar("_M", bound=message.Message)

# Reason and status code per domain error, most specific first: the first isinstance match wins.
_REASONS: tuple[tuple[type[domain.BankError], str, grpc.StatusCode], ...] = (
    (domain.InsufficientFundsError, "INSUFFICIENT_FUNDS", grpc.StatusCode.FAILED_PRECONDITION),
    (domain.AccountNotOpenError, "ACCOUNT_NOT_OPEN", grpc.StatusCode.FAILED_PRECONDITION),
    (domain.AccountAlreadyOpenError, "ACCOUNT_ALREADY_OPEN", grpc.StatusCode.FAILED_PRECONDITION),
    (domain.AccountStateError, "INVALID_STATE", grpc.StatusCode.FAILED_PRECONDITION),
    (domain.InvalidCommandError, "INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT),
    (domain.BankError, "INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT),
)


def command_from_any(packed: any_pb2.Any) -> domain.Command:
    """Unpack a bank.v1 command; any other type is an `InvalidCommandError`."""
    if packed.Is(bank_pb2.OpenAccount.DESCRIPTOR):
        opened = _unpack(packed, bank_pb2.OpenAccount())
        return domain.OpenAccount(owner=opened.owner, initial_balance=opened.initial_balance)
    if packed.Is(bank_pb2.Deposit.DESCRIPTOR):
        return domain.Deposit(amount=_unpack(packed, bank_pb2.Deposit()).amount)
    if packed.Is(bank_pb2.Withdraw.DESCRIPTOR):
        return domain.Withdraw(amount=_unpack(packed, bank_pb2.Withdraw()).amount)
    raise domain.InvalidCommandError(f"unknown command type {packed.type_url!r}")


def event_from_any(packed: any_pb2.Any) -> domain.Event:
    """Unpack a bank.v1 event; any other type is an `InvalidCommandError`."""
    if packed.Is(bank_pb2.AccountOpened.DESCRIPTOR):
        opened = _unpack(packed, bank_pb2.AccountOpened())
        return domain.AccountOpened(owner=opened.owner, balance=opened.balance)
    if packed.Is(bank_pb2.MoneyDeposited.DESCRIPTOR):
        return domain.MoneyDeposited(amount=_unpack(packed, bank_pb2.MoneyDeposited()).amount)
    if packed.Is(bank_pb2.MoneyWithdrawn.DESCRIPTOR):
        return domain.MoneyWithdrawn(amount=_unpack(packed, bank_pb2.MoneyWithdrawn()).amount)
    raise domain.InvalidCommandError(f"unknown event type {packed.type_url!r}")


def event_to_any(event: domain.Event) -> any_pb2.Any:
    """Pack a domain event as its bank.v1 message."""
    if isinstance(event, domain.AccountOpened):
        return _pack(bank_pb2.AccountOpened(owner=event.owner, balance=event.balance))
    if isinstance(event, domain.MoneyDeposited):
        return _pack(bank_pb2.MoneyDeposited(amount=event.amount))
    return _pack(bank_pb2.MoneyWithdrawn(amount=event.amount))


def state_from_any(packed: any_pb2.Any) -> domain.Account | None:
    """Unpack the prior state: a BankAccount, or None for Empty (or unset) on a new account."""
    if packed.Is(bank_pb2.BankAccount.DESCRIPTOR):
        account = _unpack(packed, bank_pb2.BankAccount())
        return domain.Account(
            account_id=account.account_id, owner=account.owner, balance=account.balance
        )
    if not packed.type_url or packed.Is(empty_pb2.Empty.DESCRIPTOR):
        return None
    raise domain.InvalidCommandError(f"unexpected prior state type {packed.type_url!r}")


def state_to_any(account: domain.Account) -> any_pb2.Any:
    """Pack a domain account as a bank.v1.BankAccount."""
    return _pack(
        bank_pb2.BankAccount(
            account_id=account.account_id, owner=account.owner, balance=account.balance
        )
    )


def error_status(exc: domain.BankError) -> status_pb2.Status:
    """The google.rpc.Status for a domain error, with an ErrorInfo detail naming the reason."""
    code, reason = next((c, r) for kind, r, c in _REASONS if isinstance(exc, kind))
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    if isinstance(exc, domain.InsufficientFundsError):
        info.metadata["balance"] = str(exc.balance)
        info.metadata["requested"] = str(exc.requested)
    status = status_pb2.Status(code=code.value[0], message=str(exc))
    status.details.add().Pack(info)
    return status


class BankWriteHandler(writeside_pb2_grpc.WriteSideHandlerServiceServicer):
    """Runs domain.decide / domain.evolve for the runtime."""

    async def HandleCommand(
        self,
        request: writeside_pb2.HandleCommandRequest,
        context: grpc.aio.ServicerContext[
            writeside_pb2.HandleCommandRequest, writeside_pb2.HandleCommandResponse
        ],
    ) -> writeside_pb2.HandleCommandResponse:
        """Return the events the command produces on the prior state."""
        try:
            state = state_from_any(request.prior_state)
            events = domain.decide(state, command_from_any(request.command))
        except domain.BankError as exc:
            await _abort(context, exc)
        return writeside_pb2.HandleCommandResponse(events=[event_to_any(e) for e in events])

    async def HandleEvent(
        self,
        request: writeside_pb2.HandleEventRequest,
        context: grpc.aio.ServicerContext[
            writeside_pb2.HandleEventRequest, writeside_pb2.HandleEventResponse
        ],
    ) -> writeside_pb2.HandleEventResponse:
        """Return the state after applying the event to the prior state."""
        try:
            state = state_from_any(request.prior_state)
            event = event_from_any(request.event)
            account = domain.evolve(state, event, account_id=request.event_meta.entity_id)
        except domain.BankError as exc:
            await _abort(context, exc)
        return writeside_pb2.HandleEventResponse(resulting_state=state_to_any(account))


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop with a short grace period."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # a taken port must fail
    writeside_pb2_grpc.add_WriteSideHandlerServiceServicer_to_server(BankWriteHandler(), server)
    bound_port = server.add_insecure_port(_address(host, port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    print(f"bank write handler listening on {_address(host, bound_port)}", flush=True)
    await stop.wait()
    await server.stop(GRACE_SECONDS)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description="Bank example write handler (gRPC).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=50051, help="port to bind; 0 picks one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.host, args.port))


async def _abort(
    context: grpc.aio.ServicerContext[object, object], exc: domain.BankError
) -> NoReturn:
    logger.info("rejected: %s", exc)
    await context.abort_with_status(rpc_status.to_status(error_status(exc)))
    # abort_with_status always raises; grpc ships no type stubs that tell mypy so.
    raise AssertionError("abort_with_status returned") from exc


def _unpack(packed: any_pb2.Any, message: _M) -> _M:
    packed.Unpack(message)
    return message


def _pack(msg: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def _address(host: str, port: int) -> str:
    # An IPv6 literal needs brackets before the port.
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


if __name__ == "__main__":
    main()
