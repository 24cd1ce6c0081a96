"""Tests of examples/bank: the pure domain rules, the client's formatting, and the
write handler served from a subprocess over a real gRPC channel, both the Python one
(examples/bank/handler.py) and the Node.js one (examples/bank-node/handler.js)."""

from __future__ import annotations

import argparse
import importlib.util
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2, message
from google.rpc import error_details_pb2, status_pb2

from chief_of_state.v1 import common_pb2, writeside_pb2, writeside_pb2_grpc
from tests.support.errors import error_info, rich_status
from tests.support.processes import BANK_HANDLERS, bank_handler_args

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "bank"
STARTUP_TIMEOUT_SECONDS = 30.0
CALL_TIMEOUT_SECONDS = 10.0


def _load(name: str) -> ModuleType:
    # Loaded under unique names so the example's plain module names (domain, client)
    # never shadow anything else in the test session.
    spec = importlib.util.spec_from_file_location(f"bank_example_{name}", EXAMPLE_DIR / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


domain = _load("domain.py")
client = _load("client.py")  # puts examples/bank/gen on sys.path, so bank.v1 imports below
from bank.v1 import bank_pb2  # noqa: E402

ALICE = domain.Account(account_id="acc-1", owner="alice", balance=1_000)


# ---- domain.decide ----


def test_open_new_account_emits_account_opened() -> None:
    events = domain.decide(None, domain.OpenAccount(owner="alice", initial_balance=250))
    assert events == [domain.AccountOpened(owner="alice", balance=250)]


def test_open_defaults_to_zero_balance() -> None:
    assert domain.decide(None, domain.OpenAccount(owner="bob")) == [
        domain.AccountOpened(owner="bob", balance=0)
    ]


def test_open_existing_account_is_rejected() -> None:
    with pytest.raises(domain.AccountAlreadyOpenError):
        domain.decide(ALICE, domain.OpenAccount(owner="mallory"))


def test_open_with_negative_balance_is_invalid() -> None:
    with pytest.raises(domain.InvalidCommandError):
        domain.decide(None, domain.OpenAccount(owner="alice", initial_balance=-1))


def test_deposit_emits_money_deposited() -> None:
    assert domain.decide(ALICE, domain.Deposit(amount=50)) == [domain.MoneyDeposited(amount=50)]


def test_withdraw_within_balance_emits_money_withdrawn() -> None:
    events = domain.decide(ALICE, domain.Withdraw(amount=1_000))
    assert events == [domain.MoneyWithdrawn(amount=1_000)]


@pytest.mark.parametrize("command", [domain.Deposit(amount=10), domain.Withdraw(amount=10)])
def test_money_moves_on_unopened_account_are_rejected(command: object) -> None:
    with pytest.raises(domain.AccountNotOpenError):
        domain.decide(None, command)


@pytest.mark.parametrize(
    "command",
    [
        domain.Deposit(amount=0),
        domain.Deposit(amount=-5),
        domain.Withdraw(amount=0),
        domain.Withdraw(amount=-5),
    ],
)
def test_non_positive_amounts_are_invalid(command: object) -> None:
    with pytest.raises(domain.InvalidCommandError):
        domain.decide(ALICE, command)


def test_over_withdraw_reports_balance_and_request() -> None:
    with pytest.raises(domain.InsufficientFundsError) as caught:
        domain.decide(ALICE, domain.Withdraw(amount=1_001))
    assert (caught.value.balance, caught.value.requested) == (1_000, 1_001)
    assert isinstance(caught.value, domain.AccountStateError)


def test_unknown_command_is_invalid() -> None:
    with pytest.raises(domain.InvalidCommandError):
        domain.decide(ALICE, object())


# ---- domain.evolve ----


def test_evolve_account_opened_uses_entity_id() -> None:
    opened = domain.evolve(None, domain.AccountOpened(owner="alice", balance=7), "acc-9")
    assert opened == domain.Account(account_id="acc-9", owner="alice", balance=7)


def test_evolve_applies_deposits_and_withdrawals() -> None:
    state = domain.evolve(ALICE, domain.MoneyDeposited(amount=30), "acc-1")
    state = domain.evolve(state, domain.MoneyWithdrawn(amount=100), "acc-1")
    assert state == domain.Account(account_id="acc-1", owner="alice", balance=930)


def test_evolve_money_event_on_unopened_account_is_rejected() -> None:
    with pytest.raises(domain.AccountNotOpenError):
        domain.evolve(None, domain.MoneyDeposited(amount=1), "acc-1")


def test_evolve_unknown_event_is_invalid() -> None:
    with pytest.raises(domain.InvalidCommandError):
        domain.evolve(ALICE, object(), "acc-1")


# ---- client formatting ----


def test_client_builds_open_command() -> None:
    args = argparse.Namespace(action="open", owner="alice", balance=5)
    unpacked = bank_pb2.OpenAccount()
    assert client.build_command(args).Unpack(unpacked)
    assert unpacked == bank_pb2.OpenAccount(owner="alice", initial_balance=5)


def test_client_formats_state_and_meta() -> None:
    meta = common_pb2.MetaData(entity_id="acc-1", revision_number=3)
    meta.revision_date.FromJsonString("2024-05-01T12:00:00Z")
    text = client.format_reply(_pack(bank_pb2.BankAccount(account_id="acc-1", balance=42)), meta)
    assert "balance: 42" in text
    assert "revision_number: 3" in text
    assert "revision_date: 2024-05-01T12:00:00Z" in text


def test_client_formats_error_with_error_info() -> None:
    status = status_pb2.Status(code=9, message="insufficient funds")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason="INSUFFICIENT_FUNDS", domain="bank.example", metadata={"balance": "1"}
        )
    )
    text = client.format_error(grpc.StatusCode.FAILED_PRECONDITION, "insufficient funds", status)
    assert text.splitlines() == [
        "error: FAILED_PRECONDITION: insufficient funds",
        "  reason: INSUFFICIENT_FUNDS (bank.example) balance=1",
    ]


# ---- the handlers (examples/bank/handler.py, examples/bank-node/handler.js) over gRPC ----


@pytest.fixture(scope="module", params=sorted(BANK_HANDLERS))
def handler_stub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[writeside_pb2_grpc.WriteSideHandlerServiceStub]:
    """Serve the Python or the Node handler in a subprocess on an OS-chosen port; check
    it stops on SIGTERM. Every handler test runs against both."""
    log = tmp_path_factory.mktemp(f"handler-{request.param}") / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            bank_handler_args(request.param, "--host", "127.0.0.1", "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_SECONDS)
        line = proc.stdout.readline().strip() if ready else ""
        prefix = "bank write handler listening on "
        assert line.startswith(prefix), f"handler did not start: {line!r}\n{log.read_text()}"
        with grpc.insecure_channel(line.removeprefix(prefix)) as channel:
            yield writeside_pb2_grpc.WriteSideHandlerServiceStub(channel)
    finally:
        proc.terminate()
        returncode = proc.wait(timeout=STARTUP_TIMEOUT_SECONDS)
        remaining = proc.stdout.read()
        proc.stdout.close()
    assert returncode == 0
    assert remaining == ""


@pytest.mark.parametrize("language", sorted(BANK_HANDLERS))
def test_handler_rejects_a_bad_port_with_its_usage(language: str) -> None:
    done = subprocess.run(
        bank_handler_args(language, "--port", "x"),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: ")
    assert "error: argument --port: invalid int value: 'x'" in done.stderr


OPEN_ALICE = bank_pb2.BankAccount(account_id="acc-1", owner="alice", balance=500)


@pytest.mark.parametrize(
    ("command", "prior_state", "expected_event"),
    [
        (
            bank_pb2.OpenAccount(owner="alice", initial_balance=500),
            empty_pb2.Empty(),
            bank_pb2.AccountOpened(owner="alice", balance=500),
        ),
        (bank_pb2.Deposit(amount=20), OPEN_ALICE, bank_pb2.MoneyDeposited(amount=20)),
        (bank_pb2.Withdraw(amount=500), OPEN_ALICE, bank_pb2.MoneyWithdrawn(amount=500)),
    ],
)
def test_handler_command_emits_event(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
    command: message.Message,
    prior_state: message.Message,
    expected_event: message.Message,
) -> None:
    reply = handler_stub.HandleCommand(
        writeside_pb2.HandleCommandRequest(
            command=_pack(command),
            prior_state=_pack(prior_state),
            prior_event_meta=common_pb2.MetaData(entity_id="acc-1"),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert len(reply.events) == 1
    event = type(expected_event)()
    assert reply.events[0].Unpack(event)
    assert event == expected_event


def test_handler_applies_event(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
) -> None:
    reply = handler_stub.HandleEvent(
        writeside_pb2.HandleEventRequest(
            event=_pack(bank_pb2.MoneyDeposited(amount=250)),
            prior_state=_pack(bank_pb2.BankAccount(account_id="acc-1", owner="a", balance=500)),
            event_meta=common_pb2.MetaData(entity_id="acc-1", revision_number=2),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    state = bank_pb2.BankAccount()
    assert reply.resulting_state.Unpack(state)
    assert state == bank_pb2.BankAccount(account_id="acc-1", owner="a", balance=750)


def test_handler_rejects_over_withdraw_with_error_info(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        handler_stub.HandleCommand(
            writeside_pb2.HandleCommandRequest(
                command=_pack(bank_pb2.Withdraw(amount=900)),
                prior_state=_pack(bank_pb2.BankAccount(account_id="acc-1", balance=500)),
                prior_event_meta=common_pb2.MetaData(entity_id="acc-1", revision_number=1),
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(caught.value)
    assert info.reason == "INSUFFICIENT_FUNDS"
    assert info.domain == "bank.example"
    assert dict(info.metadata) == {"balance": "500", "requested": "900"}


def test_handler_rejects_unknown_command_type(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        handler_stub.HandleCommand(
            writeside_pb2.HandleCommandRequest(
                command=_pack(empty_pb2.Empty()), prior_state=_pack(empty_pb2.Empty())
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "type.googleapis.com/google.protobuf.Empty" in caught.value.details()


EMPTY = empty_pb2.Empty()
INVALID = grpc.StatusCode.INVALID_ARGUMENT
REFUSED = grpc.StatusCode.FAILED_PRECONDITION
EMPTY_URL = "type.googleapis.com/google.protobuf.Empty"


@pytest.mark.parametrize(
    ("command", "prior_state", "code", "text", "reason"),
    [
        (
            bank_pb2.OpenAccount(owner="bob"),
            OPEN_ALICE,
            REFUSED,
            "account 'acc-1' is already open",
            "ACCOUNT_ALREADY_OPEN",
        ),
        (
            bank_pb2.OpenAccount(owner="bob", initial_balance=-1),
            OPEN_ALICE,
            INVALID,
            "initial balance must not be negative, got -1",
            "INVALID_ARGUMENT",
        ),
        (bank_pb2.Deposit(amount=10), EMPTY, REFUSED, "account is not open", "ACCOUNT_NOT_OPEN"),
        (bank_pb2.Withdraw(amount=10), EMPTY, REFUSED, "account is not open", "ACCOUNT_NOT_OPEN"),
        (
            bank_pb2.Deposit(amount=-5),
            EMPTY,
            INVALID,
            "amount must be positive, got -5",
            "INVALID_ARGUMENT",
        ),
        (
            bank_pb2.Withdraw(amount=0),
            OPEN_ALICE,
            INVALID,
            "amount must be positive, got 0",
            "INVALID_ARGUMENT",
        ),
        (EMPTY, EMPTY, INVALID, f"unknown command type '{EMPTY_URL}'", "INVALID_ARGUMENT"),
        (
            bank_pb2.Deposit(amount=1),
            bank_pb2.Deposit(amount=1),
            INVALID,
            "unexpected prior state type 'type.googleapis.com/bank.v1.Deposit'",
            "INVALID_ARGUMENT",
        ),
    ],
)
def test_handler_rejection_is_a_rich_status(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
    command: message.Message,
    prior_state: message.Message,
    code: grpc.StatusCode,
    text: str,
    reason: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        handler_stub.HandleCommand(
            writeside_pb2.HandleCommandRequest(
                command=_pack(command), prior_state=_pack(prior_state)
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    _assert_refused(caught.value, code, text, reason)


def test_handler_keeps_int64_amounts_exact(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
) -> None:
    # 2**53 + 1 is the first integer a float64 cannot hold.
    big = 2**53 + 1
    reply = handler_stub.HandleEvent(
        writeside_pb2.HandleEventRequest(
            event=_pack(bank_pb2.MoneyDeposited(amount=big)),
            prior_state=_pack(bank_pb2.BankAccount(account_id="acc-1", balance=big)),
            event_meta=common_pb2.MetaData(entity_id="acc-1", revision_number=2),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    state = bank_pb2.BankAccount()
    assert reply.resulting_state.Unpack(state)
    assert state.balance == 2 * big


def test_handler_opens_account_under_entity_id(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
) -> None:
    reply = handler_stub.HandleEvent(
        writeside_pb2.HandleEventRequest(
            event=_pack(bank_pb2.AccountOpened(owner="carol", balance=7)),
            prior_state=_pack(EMPTY),
            event_meta=common_pb2.MetaData(entity_id="acc-9", revision_number=1),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    state = bank_pb2.BankAccount()
    assert reply.resulting_state.Unpack(state)
    assert state == bank_pb2.BankAccount(account_id="acc-9", owner="carol", balance=7)


@pytest.mark.parametrize(
    ("event", "prior_state", "code", "text", "reason"),
    [
        (
            bank_pb2.MoneyWithdrawn(amount=1),
            EMPTY,
            REFUSED,
            "account is not open",
            "ACCOUNT_NOT_OPEN",
        ),
        (EMPTY, OPEN_ALICE, INVALID, f"unknown event type '{EMPTY_URL}'", "INVALID_ARGUMENT"),
    ],
)
def test_handler_rejects_bad_event(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
    event: message.Message,
    prior_state: message.Message,
    code: grpc.StatusCode,
    text: str,
    reason: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        handler_stub.HandleEvent(
            writeside_pb2.HandleEventRequest(event=_pack(event), prior_state=_pack(prior_state)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    _assert_refused(caught.value, code, text, reason)


def test_handler_corrupt_payload_is_unknown(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
) -> None:
    corrupt = any_pb2.Any(type_url="type.googleapis.com/bank.v1.Deposit", value=b"\xff\xff")
    with pytest.raises(grpc.RpcError) as caught:
        handler_stub.HandleCommand(
            writeside_pb2.HandleCommandRequest(command=corrupt, prior_state=_pack(OPEN_ALICE)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert "Error parsing message with type 'bank.v1.Deposit'" in caught.value.details()


def test_handler_balance_beyond_int64_is_unknown(
    handler_stub: writeside_pb2_grpc.WriteSideHandlerServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        handler_stub.HandleEvent(
            writeside_pb2.HandleEventRequest(
                event=_pack(bank_pb2.MoneyDeposited(amount=1)),
                prior_state=_pack(bank_pb2.BankAccount(account_id="acc-1", balance=2**63 - 1)),
                event_meta=common_pb2.MetaData(entity_id="acc-1", revision_number=2),
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert f"Value out of range: {2**63}" in caught.value.details()


def _assert_refused(error: grpc.RpcError, code: grpc.StatusCode, text: str, reason: str) -> None:
    """The handler's code and message, and one ErrorInfo of the bank's with ``reason``."""
    assert (error.code(), error.details()) == (code, text)
    assert len(rich_status(error).details) == 1
    info = error_info(error)
    assert (info.reason, info.domain, dict(info.metadata)) == (reason, "bank.example", {})


def _pack(msg: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed
