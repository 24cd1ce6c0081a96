"""The bank example's write-side flow through a real runtime (Ray, PostgreSQL), once
against the Python handler (examples/bank) and once against the Node.js one
(examples/bank-node): the same replies, journal and rich errors from both."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import asyncpg
import grpc
import pytest
from google.protobuf import any_pb2, message

from chief_of_state.v1 import persistence_pb2, service_pb2
from tests.support.errors import error_info
from tests.support.processes import BANK_HANDLERS, ROOT, Process, bank_handler_args
from tests.support.runtimes import RunningRuntime, StartRuntime

# The generated bank.v1 package lives beside the example, not in site-packages.
sys.path.insert(0, str(ROOT / "examples/bank/gen"))
from bank.v1 import bank_pb2

ACCOUNT = "acc-1"


@pytest.fixture(scope="module", params=sorted(BANK_HANDLERS))
def write_handler(request: pytest.FixtureRequest) -> Iterator[int]:
    """The bank handler in one language in its own process (this module's runtimes call
    it instead of the test handler); yields its port."""
    args = bank_handler_args(request.param, "--host", "127.0.0.1", "--port", "0")
    process = Process(args)
    port = int(process.wait_for(r"listening on [\d.]+:(\d+)", timeout=30).group(1))
    yield port
    assert process.stop() == 0, process.output


async def test_bank_flow_through_the_runtime(
    start_cos: StartRuntime, db: asyncpg.Connection
) -> None:
    cos = await start_cos()
    opened = await process(cos, bank_pb2.OpenAccount(owner="alice", initial_balance=1_000))
    assert account_of(opened.state) == bank_pb2.BankAccount(
        account_id=ACCOUNT, owner="alice", balance=1_000
    )
    deposited = await process(cos, bank_pb2.Deposit(amount=250))
    withdrawn = await process(cos, bank_pb2.Withdraw(amount=100))
    assert account_of(deposited.state).balance == 1_250
    assert account_of(withdrawn.state).balance == 1_150
    assert withdrawn.meta.revision_number == 3

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await process(cos, bank_pb2.Withdraw(amount=5_000))
    # The handler's status reaches the caller unchanged: code, message and details.
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == "insufficient funds: balance 1150, requested 5000"
    info = error_info(refused.value)
    assert (info.reason, info.domain) == ("INSUFFICIENT_FUNDS", "bank.example")
    assert dict(info.metadata) == {"balance": "1150", "requested": "5000"}

    got = await cos.stub.GetState(service_pb2.GetStateRequest(entity_id=ACCOUNT))
    assert (got.state, got.meta) == (withdrawn.state, withdrawn.meta)
    assert await journaled_types(db) == [
        "bank.v1.AccountOpened",
        "bank.v1.MoneyDeposited",
        "bank.v1.MoneyWithdrawn",
    ]


async def process(
    cos: RunningRuntime, command: message.Message
) -> service_pb2.ProcessCommandResponse:
    """ProcessCommand of a bank.v1 command on the test's account."""
    packed = any_pb2.Any()
    packed.Pack(command)
    request = service_pb2.ProcessCommandRequest(entity_id=ACCOUNT, command=packed)
    return await cos.stub.ProcessCommand(request)


def account_of(state: any_pb2.Any) -> bank_pb2.BankAccount:
    account = bank_pb2.BankAccount()
    assert state.Unpack(account), state.type_url
    return account


async def journaled_types(db: asyncpg.Connection) -> list[str]:
    """The message types of the account's journaled events, in revision order."""
    rows = await db.fetch(
        "SELECT payload FROM cos_journal WHERE entity_id = $1 ORDER BY revision", ACCOUNT
    )
    events = [persistence_pb2.EventWrapper.FromString(row["payload"]).event for row in rows]
    return [event.type_url.rsplit("/", 1)[-1] for event in events]
