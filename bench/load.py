"""Closed-loop gRPC load on ChiefOfStateService.ProcessCommand with the bank example's commands.

``--concurrency`` workers share one channel. Worker ``w`` owns the entities ``w``, ``w + N``,
``w + 2N``, ...: during warm-up it opens each of them once (``OpenAccount``), then it sends
``Deposit(1)`` to them in turn, one call at a time, until the window closes. So no two calls
for one entity are ever in flight together, and the target never has to queue one entity's
commands behind another's: what is measured is the throughput of the command path. With
fewer ``--entities`` than workers, worker ``w`` sends to entity ``w % entities`` instead, which
it shares with others (``--entities 1``: every call to one hot entity).

The measured window starts when every entity is open and ``--warmup`` seconds have passed,
and lasts ``--duration`` seconds. A call counts if it completes inside the window: its
latency is recorded if it succeeded, its status code counted if it failed.

``run_groups`` drives the same load with each worker's entities given, in named groups
that share one window and get a result each (bench/cluster.py: accounts served where the
call lands against accounts forwarded to another host).

Run: ``python bench/load.py --target 127.0.0.1:9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The generated bank.v1 package lives with the example, not in site-packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "bank" / "gen"))

import grpc
from bank.v1 import bank_pb2
from google.protobuf import any_pb2

from chief_of_state.v1 import service_pb2, service_pb2_grpc

DEPOSIT_AMOUNT = 1
IDEMPOTENCY_KEY = "x-cos-idempotency-key"
_WORKERS = itertools.count()  # names the workers, for their idempotency keys


@dataclass(frozen=True)
class LoadSettings:
    """What to load and for how long."""

    target: str
    concurrency: int = 64
    duration: float = 20.0
    warmup: float = 3.0
    entities: int = 1000
    id_prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    call_timeout: float = 30.0
    # Keep every deposit in LoadResult.calls, for benches that look at the calls around
    # an event rather than at a window (bench/cluster.py's hand-overs).
    trace: bool = False
    # Send every command with a unique x-cos-idempotency-key (what a keyed command costs).
    keyed: bool = False
    # The accounts exist already with this balance (bench/journal_fill.py made them): none
    # is opened.
    opened_balance: int | None = None

    def entity_ids(self, worker: int) -> list[str]:
        """The entities worker ``worker`` sends to: its own, or with fewer entities than
        workers, the one it shares with every ``entities``-th worker (a hot entity)."""
        if self.entities < self.concurrency:
            return [f"{self.id_prefix}-{worker % self.entities}"]
        owned = range(worker, self.entities, self.concurrency)
        return [f"{self.id_prefix}-{index}" for index in owned]


@dataclass(frozen=True)
class Call:
    """One deposit as the client saw it; times from ``time.perf_counter``."""

    started: float
    completed: float
    code: str | None  # the status code's name if it failed, None if it succeeded

    @property
    def latency_ms(self) -> float:
        """Time from sending to the answer, in milliseconds."""
        return (self.completed - self.started) * 1000.0


@dataclass
class LoadResult:
    """What happened inside the measured window, and the balances the target should hold."""

    window_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    warmup_errors: Counter[str] = field(default_factory=Counter)
    # Balance each account must have from the calls that succeeded; None: its open failed.
    balances: dict[str, int | None] = field(default_factory=dict)
    # Every deposit, inside the window or not; only with LoadSettings.trace.
    calls: list[Call] = field(default_factory=list)

    @property
    def commands(self) -> int:
        """Successful commands completed inside the window."""
        return len(self.latencies_ms)

    @property
    def error_count(self) -> int:
        """Failed commands completed inside the window."""
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful commands per second over the window."""
        return self.commands / self.window_seconds if self.window_seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """Latency at quantile ``q`` (0 < q <= 1) by nearest rank; NaN with no calls."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class _Window:
    """The measured window, shared by the workers; times from ``time.perf_counter``."""

    start: float | None = None
    closed: bool = False

    def counts(self, completed_at: float) -> bool:
        return self.start is not None and not self.closed and completed_at >= self.start


def pack_command(message: bank_pb2.OpenAccount | bank_pb2.Deposit) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


class _Worker:
    """One closed-loop client: opens its entities, then deposits into them in turn."""

    def __init__(
        self,
        stub: service_pb2_grpc.ChiefOfStateServiceStub,
        entity_ids: list[str],
        settings: LoadSettings,
        window: _Window,
        result: LoadResult,
        opening: dict[str, asyncio.Event],
    ) -> None:
        self._stub = stub
        self._name = f"w{next(_WORKERS)}"
        self._ids = entity_ids
        self._timeout = settings.call_timeout
        self._trace = settings.trace
        # Unique per entity: a worker never repeats a number, nor uses another's name.
        self._keys = itertools.count() if settings.keyed else None
        self._window = window
        self._result = result
        self._opening = opening
        self._opened_balance = settings.opened_balance
        self.opened = asyncio.Event()

    async def run(self) -> None:
        """Opens every owned entity, tells the coordinator, then deposits until the end."""
        await self._open_all()
        self.opened.set()
        deposit = pack_command(bank_pb2.Deposit(amount=DEPOSIT_AMOUNT))
        live = [i for i in self._ids if self._result.balances[i] is not None] or self._ids
        turn = 0
        while not self._window.closed:
            entity_id = live[turn % len(live)]
            turn += 1
            await self._deposit(entity_id, deposit)

    async def _open_all(self) -> None:
        if self._opened_balance is not None:
            for entity_id in self._ids:
                self._result.balances[entity_id] = self._opened_balance
            return
        for entity_id in self._ids:
            opening = self._opening.get(entity_id)
            if opening is not None:  # shared: another worker opens it
                await opening.wait()
                continue
            opening = self._opening[entity_id] = asyncio.Event()
            command = pack_command(bank_pb2.OpenAccount(owner="bench", initial_balance=0))
            code = await self._call(entity_id, command)
            self._result.balances[entity_id] = 0 if code is None else None
            if code is not None:
                self._result.warmup_errors[code] += 1
            opening.set()

    async def _deposit(self, entity_id: str, command: any_pb2.Any) -> None:
        started = time.perf_counter()
        code = await self._call(entity_id, command)
        completed = time.perf_counter()
        if self._trace:
            self._result.calls.append(Call(started, completed, code))
        balance = self._result.balances[entity_id]
        if code is None and balance is not None:
            self._result.balances[entity_id] = balance + DEPOSIT_AMOUNT
        if not self._window.counts(completed):
            if code is not None:
                self._result.warmup_errors[code] += 1
        elif code is None:
            self._result.latencies_ms.append((completed - started) * 1000.0)
        else:
            self._result.errors[code] += 1

    async def _call(self, entity_id: str, command: any_pb2.Any) -> str | None:
        """Sends one command; the status code name if it failed, None if it succeeded."""
        request = service_pb2.ProcessCommandRequest(entity_id=entity_id, command=command)
        metadata = ()
        if self._keys is not None:
            metadata = ((IDEMPOTENCY_KEY, f"{self._name}-k{next(self._keys)}"),)
        try:
            await self._stub.ProcessCommand(request, timeout=self._timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        return None


def _nothing() -> None:
    return None


async def run_load(
    settings: LoadSettings,
    on_window_start: Callable[[], None] = _nothing,
    on_window_end: Callable[[], None] = _nothing,
) -> LoadResult:
    """Drives the load; calls the hooks right as the measured window opens and closes."""
    if settings.entities < 1:
        raise ValueError("--entities must be at least 1")
    owned = [settings.entity_ids(w) for w in range(settings.concurrency)]
    results = await run_groups(settings, {"load": owned}, on_window_start, on_window_end)
    return results["load"]


async def run_groups(
    settings: LoadSettings,
    groups: Mapping[str, Sequence[list[str]]],
    on_window_start: Callable[[], None] = _nothing,
    on_window_end: Callable[[], None] = _nothing,
    until: Callable[[], Awaitable[object]] | None = None,
) -> dict[str, LoadResult]:
    """The load of ``run_load`` with each worker's entities given: per group, one list of
    entity ids per worker. All workers share the channel and the window; each group gets
    its own result. ``settings.concurrency`` and ``settings.entities`` are not used.

    With ``until``, the window lasts until the awaitable it returns (called as the window
    opens) is done, instead of ``settings.duration`` seconds; its error ends the load.
    """
    results = {name: LoadResult() for name in groups}
    window = _Window()
    async with grpc.aio.insecure_channel(settings.target) as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        opening: dict[str, asyncio.Event] = {}  # entity -> opened, for shared entities
        workers = [
            _Worker(stub, entity_ids, settings, window, results[name], opening)
            for name, owned in groups.items()
            for entity_ids in owned
        ]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            began = time.perf_counter()
            await _first_error_or(tasks, asyncio.gather(*(w.opened.wait() for w in workers)))
            await asyncio.sleep(max(0.0, settings.warmup - (time.perf_counter() - began)))
            window.start = time.perf_counter()
            on_window_start()
            step = until() if until is not None else asyncio.sleep(settings.duration)
            await _first_error_or(tasks, step)
            window_seconds = time.perf_counter() - window.start
            for result in results.values():
                result.window_seconds = window_seconds
            window.closed = True
            on_window_end()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return results


async def _first_error_or(tasks: Iterable[asyncio.Task[None]], step: Awaitable[object]) -> None:
    """Waits for ``step``, but raises at once if a worker dies of an unexpected error."""
    step_task: asyncio.Future[object] = asyncio.ensure_future(step)
    pending: set[asyncio.Future[Any]] = {step_task, *tasks}
    while not step_task.done():
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task is step_task else task.exception()
            if error is not None:
                step_task.cancel()
                raise error
    step_task.result()


async def check_balances(target: str, expected: dict[str, int | None]) -> tuple[int, list[str]]:
    """Reads every opened account back; the number that matched and a note for each that did
    not. A mismatch means the target acknowledged a deposit it did not keep, or kept one it
    failed; either makes its throughput figure meaningless."""
    semaphore = asyncio.Semaphore(32)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)

        async def check(entity_id: str, balance: int) -> str | None:
            async with semaphore:
                try:
                    reply = await stub.GetState(
                        service_pb2.GetStateRequest(entity_id=entity_id), timeout=30
                    )
                except grpc.aio.AioRpcError as exc:
                    return f"{entity_id}: GetState {exc.code().name}"
            account = bank_pb2.BankAccount()
            if not reply.state.Unpack(account):
                return f"{entity_id}: state is {reply.state.type_url}"
            if account.balance != balance:
                return f"{entity_id}: balance {account.balance}, expected {balance}"
            return None

        opened = {k: v for k, v in expected.items() if v is not None}
        notes = await asyncio.gather(*(check(k, v) for k, v in opened.items()))
    problems = [note for note in notes if note is not None]
    return len(opened) - len(problems), problems


def format_result(result: LoadResult) -> str:
    """A few lines summing up one run of the load."""
    lines = [
        f"window: {result.window_seconds:.1f} s, commands: {result.commands},"
        f" throughput: {result.throughput:.1f} cmd/s",
        f"latency ms: p50 {result.percentile_ms(0.50):.2f}, p95 {result.percentile_ms(0.95):.2f},"
        f" p99 {result.percentile_ms(0.99):.2f}",
        f"errors in window: {result.error_count} {dict(result.errors) or ''}".rstrip(),
    ]
    if result.warmup_errors:
        lines.append(f"errors outside window: {dict(result.warmup_errors)}")
    return "\n".join(lines)


def _parse_args() -> LoadSettings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="ChiefOfStateService as host:port")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--entities", type=int, default=1000, help="accounts to spread over")
    parser.add_argument(
        "--keyed", action="store_true", help="a unique x-cos-idempotency-key on every command"
    )
    args = parser.parse_args()
    return LoadSettings(
        target=args.target,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        entities=args.entities,
        keyed=args.keyed,
    )


async def _main(settings: LoadSettings) -> None:
    result = await run_load(settings)
    print(format_result(result))
    matched, problems = await check_balances(settings.target, result.balances)
    print(f"balances read back: {matched} match, {len(problems)} differ")
    for note in problems[:10]:
        print(f"  {note}")


if __name__ == "__main__":
    asyncio.run(_main(_parse_args()))
