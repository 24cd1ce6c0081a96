'use strict';
/**
 * Decisions of the bank-account example, as pure functions over plain values: the
 * Node.js twin of examples/bank/domain.py, rule for rule and message for message.
 *
 * No gRPC and no protobuf here: handler.js translates the wire messages to these
 * objects and the errors below to status codes. `decide(state, command)` returns the
 * events a command produces (or throws); `evolve(state, event, accountId)` returns the
 * state after one event. `null` stands for an account that has not been opened yet.
 * Amounts are integer cents held as BigInt, since the wire type is int64.
 *
 * Values are tagged objects: commands `{kind: 'OpenAccount', owner, initialBalance}`,
 * `{kind: 'Deposit', amount}`, `{kind: 'Withdraw', amount}`; events
 * `{kind: 'AccountOpened', owner, balance}`, `{kind: 'MoneyDeposited', amount}`,
 * `{kind: 'MoneyWithdrawn', amount}`; state `{accountId, owner, balance}`.
 *
 * Error tree (what the caller does next decides the status code):
 *
 *     BankError
 *     ├── InvalidCommandError        -> INVALID_ARGUMENT (the command itself is wrong)
 *     └── AccountStateError          -> FAILED_PRECONDITION (wrong for the current state)
 *         ├── AccountNotOpenError
 *         ├── AccountAlreadyOpenError
 *         └── InsufficientFundsError (carries balance and requested)
 */

/** Root of the example's domain errors. */
class BankError extends Error {}

/** The command is malformed whatever the state (e.g. a non-positive amount). */
class InvalidCommandError extends BankError {}

/** The command is well formed but not allowed in the account's current state. */
class AccountStateError extends BankError {}

/** Deposit, withdraw or a non-opening event on an account that was never opened. */
class AccountNotOpenError extends AccountStateError {
  constructor() {
    super('account is not open');
  }
}

/** OpenAccount on an account that is already open. */
class AccountAlreadyOpenError extends AccountStateError {
  /** @param {string} accountId */
  constructor(accountId) {
    super(`account ${pyRepr(accountId)} is already open`);
    this.accountId = accountId;
  }
}

/** Withdraw of more than the balance. */
class InsufficientFundsError extends AccountStateError {
  /** @param {bigint} balance @param {bigint} requested */
  constructor(balance, requested) {
    super(`insufficient funds: balance ${balance}, requested ${requested}`);
    this.balance = balance;
    this.requested = requested;
  }
}

/** Return the events `command` produces on `state`, or throw a `BankError`. */
function decide(state, command) {
  switch (command.kind) {
    case 'OpenAccount':
      return [open(state, command)];
    case 'Deposit':
      requirePositive(command.amount);
      requireOpen(state);
      return [{ kind: 'MoneyDeposited', amount: command.amount }];
    case 'Withdraw': {
      requirePositive(command.amount);
      const account = requireOpen(state);
      if (command.amount > account.balance) {
        throw new InsufficientFundsError(account.balance, command.amount);
      }
      return [{ kind: 'MoneyWithdrawn', amount: command.amount }];
    }
    default:
      throw new InvalidCommandError(`unknown command ${command.kind}`);
  }
}

/** Return the state after `event`; `accountId` names a newly opened account. */
function evolve(state, event, accountId) {
  if (event.kind === 'AccountOpened') {
    return { accountId, owner: event.owner, balance: event.balance };
  }
  const account = requireOpen(state);
  switch (event.kind) {
    case 'MoneyDeposited':
      return { ...account, balance: account.balance + event.amount };
    case 'MoneyWithdrawn':
      return { ...account, balance: account.balance - event.amount };
    default:
      throw new InvalidCommandError(`unknown event ${event.kind}`);
  }
}

/**
 * A string quoted the way Python's repr() quotes it, so that messages naming an id or
 * a type URL read the same from both handlers.
 */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === '\\' || ch === quote) out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

function open(state, command) {
  // A malformed command is INVALID_ARGUMENT whatever the state, as for Deposit/Withdraw.
  if (command.initialBalance < 0n) {
    throw new InvalidCommandError(
      `initial balance must not be negative, got ${command.initialBalance}`,
    );
  }
  if (state !== null) throw new AccountAlreadyOpenError(state.accountId);
  return { kind: 'AccountOpened', owner: command.owner, balance: command.initialBalance };
}

function requirePositive(amount) {
  if (amount <= 0n) throw new InvalidCommandError(`amount must be positive, got ${amount}`);
}

function requireOpen(state) {
  if (state === null) throw new AccountNotOpenError();
  return state;
}

module.exports = {
  BankError,
  InvalidCommandError,
  AccountStateError,
  AccountNotOpenError,
  AccountAlreadyOpenError,
  InsufficientFundsError,
  decide,
  evolve,
  pyRepr,
};
