"""Decisions of the bank-account example, as pure functions over plain values.

No gRPC and no protobuf here: handler.py translates the wire messages to these
dataclasses and the errors below to status codes, so every rule is unit-testable.

`decide(state, command)` returns the events a command produces (or raises);
`evolve(state, event, account_id)` returns the state after one event. `None` stands
for an account that has not been opened yet. Amounts are integer cents.

Error tree (what the caller does next decides the status code):

    BankError
    ├── InvalidCommandError        -> INVALID_ARGUMENT (the command itself is wrong)
    └── AccountStateError          -> FAILED_PRECONDITION (wrong for the current state)
        ├── AccountNotOpenError
        ├── AccountAlreadyOpenError
        └── InsufficientFundsError (carries balance and requested)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Account:
    """State of an open account."""

    account_id: str
    owner: str
    balance: int


@dataclass(frozen=True)
class OpenAccount:
    """Command: open the account for `owner` with `initial_balance` cents."""

    owner: str
    initial_balance: int = 0


@dataclass(frozen=True)
class Deposit:
    """Command: add `amount` cents."""

    amount: int


@dataclass(frozen=True)
class Withdraw:
    """Command: take `amount` cents."""

    amount: int


@dataclass(frozen=True)
class AccountOpened:
    """Event: the account was opened for `owner` with `balance` cents."""

    owner: str
    balance: int


@dataclass(frozen=True)
class MoneyDeposited:
    """Event: `amount` cents were deposited."""

    amount: int


@dataclass(frozen=True)
class MoneyWithdrawn:
    """Event: `amount` cents were withdrawn."""

    amount: int


Command = OpenAccount | Deposit | Withdraw
Event = AccountOpened | MoneyDeposited | MoneyWithdrawn


class BankError(Exception):
    """Root of the example's domain errors."""


class InvalidCommandError(BankError):
    """The command is malformed whatever the state (e.g. a non-positive amount)."""


class AccountStateError(BankError):
    """The command is well formed but not allowed in the account's current state."""


class AccountNotOpenError(AccountStateError):
    """Deposit, withdraw or a non-opening event on an account that was never opened."""

    def __init__(self) -> None:
        super().__init__("account is not open")


class AccountAlreadyOpenError(AccountStateError):
    """OpenAccount on an account that is already open."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} is already open")
        self.account_id = account_id


class InsufficientFundsError(AccountStateError):
    """Withdraw of more than the balance."""

    def __init__(self, balance: int, requested: int) -> None:
        super().__init__(f"insufficient funds: balance {balance}, requested {requested}")
        self.balance = balance
        self.requested = requested


def decide(state: Account | None, command: Command) -> list[Event]:
    """Return the events `command` produces on `state`, or raise a `BankError`."""
    if isinstance(command, OpenAccount):
        return [_open(state, command)]
    if isinstance(command, Deposit):
        _require_positive(command.amount)
        _require_open(state)
        return [MoneyDeposited(amount=command.amount)]
    if isinstance(command, Withdraw):
        _require_positive(command.amount)
        account = _require_open(state)
        if command.amount > account.balance:
            raise InsufficientFundsError(balance=account.balance, requested=command.amount)
        return [MoneyWithdrawn(amount=command.amount)]
    raise InvalidCommandError(f"unknown command {type(command).__name__}")


def evolve(state: Account | None, event: Event, account_id: str) -> Account:
    """Return the state after `event`; `account_id` names a newly opened account."""
    if isinstance(event, AccountOpened):
        return Account(account_id=account_id, owner=event.owner, balance=event.balance)
    account = _require_open(state)
    if isinstance(event, MoneyDeposited):
        return dataclasses.replace(account, balance=account.balance + event.amount)
    if isinstance(event, MoneyWithdrawn):
        return dataclasses.replace(account, balance=account.balance - event.amount)
    raise InvalidCommandError(f"unknown event {type(event).__name__}")


def _open(state: Account | None, command: OpenAccount) -> AccountOpened:
    # A malformed command is INVALID_ARGUMENT whatever the state, as for Deposit/Withdraw.
    if command.initial_balance < 0:
        raise InvalidCommandError(
            f"initial balance must not be negative, got {command.initial_balance}"
        )
    if state is not None:
        raise AccountAlreadyOpenError(state.account_id)
    return AccountOpened(owner=command.owner, balance=command.initial_balance)


def _require_positive(amount: int) -> None:
    if amount <= 0:
        raise InvalidCommandError(f"amount must be positive, got {amount}")


def _require_open(state: Account | None) -> Account:
    if state is None:
        raise AccountNotOpenError()
    return state
