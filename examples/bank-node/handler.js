#!/usr/bin/env node
'use strict';
/**
 * Write handler of the bank example in Node.js: chief_of_state.v1.WriteSideHandlerService
 * over @grpc/grpc-js, with the same behaviour as examples/bank/handler.py.
 *
 * Usage: node examples/bank-node/handler.js [--host 127.0.0.1] [--port 50051]
 *
 * Prints `bank write handler listening on HOST:PORT` once serving (with `--port 0` the
 * port the OS chose) and stops on SIGTERM or SIGINT. The rules live in domain.js; this
 * module only translates protobuf <-> domain values and domain errors <-> gRPC statuses
 * (a rejection carries a google.rpc.Status in the `grpc-status-details-bin` trailer).
 *
 * The protos are read at start-up from the repository: the runtime's contract from
 * proto/, the bank messages from examples/bank/proto/ (the very files the Python
 * handler is generated from) and google.rpc from the google-proto-files package.
 */

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const googleProtoFiles = require('google-proto-files');
const protobuf = require('protobufjs');

const domain = require('./domain');

const REPO_DIR = path.resolve(__dirname, '..', '..');
const COS_PROTO_DIR = path.join(REPO_DIR, 'proto');
const BANK_PROTO_DIR = path.join(REPO_DIR, 'examples', 'bank', 'proto');
const GOOGLE_PROTO_DIR = path.dirname(googleProtoFiles.getProtoPath());

const ERROR_DOMAIN = 'bank.example';
const GRACE_MS = 5000;
const TYPE_URL_PREFIX = 'type.googleapis.com/';
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const USAGE = 'usage: handler.js [-h] [--host HOST] [--port PORT]';

// Reason and status code per domain error, most specific first: the first instanceof match wins.
const REASONS = [
  [domain.InsufficientFundsError, 'INSUFFICIENT_FUNDS', grpc.status.FAILED_PRECONDITION],
  [domain.AccountNotOpenError, 'ACCOUNT_NOT_OPEN', grpc.status.FAILED_PRECONDITION],
  [domain.AccountAlreadyOpenError, 'ACCOUNT_ALREADY_OPEN', grpc.status.FAILED_PRECONDITION],
  [domain.AccountStateError, 'INVALID_STATE', grpc.status.FAILED_PRECONDITION],
  [domain.InvalidCommandError, 'INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
  [domain.BankError, 'INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
];

/** A payload that is not the message its type URL names. */
class DecodeError extends Error {
  name = 'DecodeError';
}

/** The protobufjs types of the bank messages and of google.rpc, by full name. */
function loadMessageTypes() {
  const root = new protobuf.Root();
  const dirs = [BANK_PROTO_DIR, GOOGLE_PROTO_DIR];
  root.resolvePath = (_origin, target) =>
    dirs.map((dir) => path.join(dir, target)).find((file) => fs.existsSync(file)) ?? target;
  const files = ['bank/v1/bank.proto', 'google/rpc/status.proto', 'google/rpc/error_details.proto'];
  root.loadSync(files, { keepCase: true });
  const names = [
    'bank.v1.OpenAccount', 'bank.v1.Deposit', 'bank.v1.Withdraw',
    'bank.v1.AccountOpened', 'bank.v1.MoneyDeposited', 'bank.v1.MoneyWithdrawn',
    'bank.v1.BankAccount', 'google.rpc.Status', 'google.rpc.ErrorInfo',
  ];
  return Object.fromEntries(names.map((name) => [name, root.lookupType(name)]));
}

/** The WriteSideHandlerService definition, as grpc-js serves it. */
function loadService() {
  const definition = protoLoader.loadSync('chief_of_state/v1/writeside.proto', {
    includeDirs: [COS_PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).chief_of_state.v1.WriteSideHandlerService.service;
}

const TYPES = loadMessageTypes();

/** The full message name an Any holds, as protobuf's Any.Is reads it (after the last '/'). */
function typeName(packed) {
  const url = packed?.type_url ?? '';
  return url.slice(url.lastIndexOf('/') + 1);
}

/** Decode the Any's value as `name`, int64 fields as BigInt. */
function unpack(packed, name) {
  const type = TYPES[name];
  let decoded;
  try {
    decoded = type.decode(packed.value);
  } catch (exc) {
    // Worded as Python's protobuf words it: a corrupt payload is no BankError, so UNKNOWN.
    throw new DecodeError(`Error parsing message with type ${domain.pyRepr(name)}: ${exc.message}`);
  }
  const fields = type.toObject(decoded, { longs: String, defaults: true });
  for (const field of type.fieldsArray) {
    if (field.type === 'int64') fields[field.name] = BigInt(fields[field.name]);
  }
  return fields;
}

/** Encode `fields` as `name` in an Any (int64 BigInts are range-checked, as protobuf does). */
function pack(name, fields) {
  const type = TYPES[name];
  const plain = { ...fields };
  for (const field of type.fieldsArray) {
    if (field.type !== 'int64') continue;
    const value = plain[field.name];
    if (value < INT64_MIN || value > INT64_MAX) {
      throw new RangeError(`Value out of range: ${value}`);
    }
    plain[field.name] = value.toString();
  }
  return { type_url: TYPE_URL_PREFIX + name, value: type.encode(type.fromObject(plain)).finish() };
}

/** Unpack a bank.v1 command; any other type is an `InvalidCommandError`. */
function commandFromAny(packed) {
  switch (typeName(packed)) {
    case 'bank.v1.OpenAccount': {
      const opened = unpack(packed, 'bank.v1.OpenAccount');
      return { kind: 'OpenAccount', owner: opened.owner, initialBalance: opened.initial_balance };
    }
    case 'bank.v1.Deposit':
      return { kind: 'Deposit', amount: unpack(packed, 'bank.v1.Deposit').amount };
    case 'bank.v1.Withdraw':
      return { kind: 'Withdraw', amount: unpack(packed, 'bank.v1.Withdraw').amount };
    default:
      throw new domain.InvalidCommandError(
        `unknown command type ${domain.pyRepr(packed?.type_url ?? '')}`,
      );
  }
}

/** Unpack a bank.v1 event; any other type is an `InvalidCommandError`. */
function eventFromAny(packed) {
  switch (typeName(packed)) {
    case 'bank.v1.AccountOpened': {
      const opened = unpack(packed, 'bank.v1.AccountOpened');
      return { kind: 'AccountOpened', owner: opened.owner, balance: opened.balance };
    }
    case 'bank.v1.MoneyDeposited':
      return { kind: 'MoneyDeposited', amount: unpack(packed, 'bank.v1.MoneyDeposited').amount };
    case 'bank.v1.MoneyWithdrawn':
      return { kind: 'MoneyWithdrawn', amount: unpack(packed, 'bank.v1.MoneyWithdrawn').amount };
    default:
      throw new domain.InvalidCommandError(
        `unknown event type ${domain.pyRepr(packed?.type_url ?? '')}`,
      );
  }
}

/** Pack a domain event as its bank.v1 message. */
function eventToAny(event) {
  if (event.kind === 'AccountOpened') {
    return pack('bank.v1.AccountOpened', { owner: event.owner, balance: event.balance });
  }
  if (event.kind === 'MoneyDeposited') {
    return pack('bank.v1.MoneyDeposited', { amount: event.amount });
  }
  return pack('bank.v1.MoneyWithdrawn', { amount: event.amount });
}

/** Unpack the prior state: a BankAccount, or null for Empty (or unset) on a new account. */
function stateFromAny(packed) {
  const name = typeName(packed);
  if (name === 'bank.v1.BankAccount') {
    const account = unpack(packed, 'bank.v1.BankAccount');
    return { accountId: account.account_id, owner: account.owner, balance: account.balance };
  }
  if (!packed?.type_url || name === 'google.protobuf.Empty') return null;
  throw new domain.InvalidCommandError(
    `unexpected prior state type ${domain.pyRepr(packed.type_url)}`,
  );
}

/** Pack a domain account as a bank.v1.BankAccount. */
function stateToAny(account) {
  return pack('bank.v1.BankAccount', {
    account_id: account.accountId,
    owner: account.owner,
    balance: account.balance,
  });
}

/** The gRPC error for a domain error: code, message and a google.rpc.Status trailer. */
function errorStatus(exc) {
  const [, reason, code] = REASONS.find(([kind]) => exc instanceof kind);
  const info = { reason, domain: ERROR_DOMAIN, metadata: {} };
  if (exc instanceof domain.InsufficientFundsError) {
    info.metadata.balance = exc.balance.toString();
    info.metadata.requested = exc.requested.toString();
  }
  const Status = TYPES['google.rpc.Status'];
  const details = [pack('google.rpc.ErrorInfo', info)];
  const status = Status.encode(Status.fromObject({ code, message: exc.message, details })).finish();
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(status));
  return { code, details: exc.message, metadata };
}

/**
 * A grpc-js unary handler running `decide(request)`: a domain error becomes its rich
 * status, anything else UNKNOWN (as grpc.aio does for an unexpected exception).
 */
function unary(decideReply) {
  return (call, callback) => {
    let reply;
    try {
      reply = decideReply(call.request);
    } catch (exc) {
      if (exc instanceof domain.BankError) {
        log(`rejected: ${exc.message}`);
        callback(errorStatus(exc));
      } else {
        log(`failed: ${exc.stack ?? exc}`);
        callback({ code: grpc.status.UNKNOWN, details: `Unexpected ${exc.name}: ${exc.message}` });
      }
      return;
    }
    callback(null, reply);
  };
}

/** Return the events the command produces on the prior state. */
const handleCommand = unary((request) => {
  const state = stateFromAny(request.prior_state);
  const events = domain.decide(state, commandFromAny(request.command));
  return { events: events.map(eventToAny) };
});

/** Return the state after applying the event to the prior state. */
const handleEvent = unary((request) => {
  const state = stateFromAny(request.prior_state);
  const event = eventFromAny(request.event);
  const account = domain.evolve(state, event, request.event_meta?.entity_id ?? '');
  return { resulting_state: stateToAny(account) };
});

/** Serve until SIGTERM or SIGINT, then stop with a short grace period. */
function serve(host, port) {
  const server = new grpc.Server();
  server.addService(loadService(), { HandleCommand: handleCommand, HandleEvent: handleEvent });
  server.bindAsync(address(host, port), grpc.ServerCredentials.createInsecure(), (err, bound) => {
    if (err) {
      process.stderr.write(`handler.js: cannot listen on ${address(host, port)}: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`bank write handler listening on ${address(host, bound)}\n`);
  });
  const stop = () => {
    const force = setTimeout(() => server.forceShutdown(), GRACE_MS);
    server.tryShutdown(() => clearTimeout(force));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/** Parse the command line (argparse's rules: usage and exit 2 on a bad one) and serve. */
function main(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '50051' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    usageError(err.message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n\nBank example write handler (gRPC).\n\noptions:\n`
      + '  -h, --help   show this help message and exit\n'
      + '  --host HOST  interface to bind\n'
      + '  --port PORT  port to bind; 0 picks one\n');
    process.exit(0);
  }
  if (!/^[-+]?\d+$/.test(values.port.trim())) {
    usageError(`argument --port: invalid int value: ${domain.pyRepr(values.port)}`);
  }
  if (Number(values.port) < 0 || Number(values.port) > 65535) {
    usageError(`argument --port: port out of range: ${values.port}`);
  }
  serve(values.host, Number(values.port));
}

function usageError(message) {
  process.stderr.write(`${USAGE}\nhandler.js: error: ${message}\n`);
  process.exit(2);
}

function log(message) {
  process.stderr.write(`${new Date().toISOString()} bank.handler ${message}\n`);
}

function address(host, port) {
  // An IPv6 literal needs brackets before the port.
  if (host.includes(':') && !host.startsWith('[')) return `[${host}]:${port}`;
  return `${host}:${port}`;
}

if (require.main === module) main(process.argv.slice(2));

module.exports = {
  commandFromAny,
  eventFromAny,
  stateFromAny,
  errorStatus,
  handleCommand,
  handleEvent,
};
