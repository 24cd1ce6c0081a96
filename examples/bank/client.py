"""Command-line client of the bank example, talking to the runtime's ChiefOfStateService.

Usage:
    python examples/bank/client.py [--address localhost:9000] open ACCOUNT_ID --owner NAME
        [--balance CENTS]
    python examples/bank/client.py deposit ACCOUNT_ID CENTS
    python examples/bank/client.py withdraw ACCOUNT_ID CENTS
    python examples/bank/client.py get ACCOUNT_ID

Prints the account state and its meta (entity id, revision number and date). On a gRPC
error prints `error: CODE: message` (and the ErrorInfo detail, if any) to stderr and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent
# The generated bank.v1 package lives beside this script, not in site-packages.
sys.path.insert(0, str(EXAMPLE_DIR / "gen"))

import grpc  # noqa: E402
from bank.v1 import bank_pb2  # noqa: E402
from google.protobuf import any_pb2, empty_pb2, text_format  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

from chief_of_state.v1 import common_pb2, service_pb2, service_pb2_grpc  # noqa: E402

DEFAULT_ADDRESS = "localhost:9000"
DEFAULT_TIMEOUT_SECONDS = 10.0


def build_command(args: argparse.Namespace) -> any_pb2.Any:
    """Pack the bank.v1 command named by the parsed `open`/`deposit`/`withdraw` arguments."""
    command: bank_pb2.OpenAccount | bank_pb2.Deposit | bank_pb2.Withdraw
    if args.action == "open":
        command = bank_pb2.OpenAccount(owner=args.owner, initial_balance=args.balance)
    elif args.action == "deposit":
        command = bank_pb2.Deposit(amount=args.cents)
    elif args.action == "withdraw":
        command = bank_pb2.Withdraw(amount=args.cents)
    else:
        raise ValueError(f"not a command: {args.action}")
    packed = any_pb2.Any()
    packed.Pack(command)
    return packed


def format_reply(state: any_pb2.Any, meta: common_pb2.MetaData) -> str:
    """Render a state and its meta as indented text."""
    lines = ["state:"]
    if state.Is(bank_pb2.BankAccount.DESCRIPTOR):
        account = bank_pb2.BankAccount()
        state.Unpack(account)
        lines += [f"  {line}" for line in text_format.MessageToString(account).splitlines()]
    elif not state.type_url or state.Is(empty_pb2.Empty.DESCRIPTOR):
        lines.append("  (no account)")
    else:
        lines.append(f"  (not a bank account: {state.type_url})")
    revision_date = meta.revision_date.ToJsonString() if meta.HasField("revision_date") else "-"
    lines += [
        "meta:",
        f"  entity_id: {meta.entity_id}",
        f"  revision_number: {meta.revision_number}",
        f"  revision_date: {revision_date}",
    ]
    return "\n".join(lines)


def format_error(code: grpc.StatusCode, message: str, status: status_pb2.Status | None) -> str:
    """Render a failed call: `error: CODE: message`, then one line per ErrorInfo detail."""
    lines = [f"error: {code.name}: {message}"]
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            pairs = " ".join(f"{key}={info.metadata[key]}" for key in sorted(info.metadata))
            lines.append(f"  reason: {info.reason} ({info.domain}) {pairs}".rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    """Send the request the arguments describe and return the formatted reply."""
    with grpc.insecure_channel(args.address) as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        if args.action == "get":
            got = stub.GetState(
                service_pb2.GetStateRequest(entity_id=args.account_id), timeout=args.timeout
            )
            return format_reply(got.state, got.meta)
        request = service_pb2.ProcessCommandRequest(
            entity_id=args.account_id, command=build_command(args)
        )
        done = stub.ProcessCommand(request, timeout=args.timeout)
        return format_reply(done.state, done.meta)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Bank example client for Chief of State.")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="ChiefOfStateService host:port")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="per-call deadline (s)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    opening = actions.add_parser("open", help="open an account")
    opening.add_argument("account_id")
    opening.add_argument("--owner", required=True, help="account holder's name")
    opening.add_argument("--balance", type=int, default=0, help="opening balance in cents")
    for name, help_text in (("deposit", "deposit cents"), ("withdraw", "withdraw cents")):
        moving = actions.add_parser(name, help=help_text)
        moving.add_argument("account_id")
        moving.add_argument("cents", type=int)
    actions.add_parser("get", help="show an account").add_argument("account_id")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the client; return the process exit code."""
    args = parse_args(argv)
    try:
        print(run(args))
    except grpc.RpcError as exc:
        print(format_error(exc.code(), exc.details() or "", _rich_status(exc)), file=sys.stderr)
        return 1
    return 0


def _rich_status(exc: grpc.RpcError) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(exc)
    except ValueError:
        # The server sent details that disagree with its status; show the status alone.
        return None


if __name__ == "__main__":
    raise SystemExit(main())
