"""Benchmark of the runtime on a multi-node Ray cluster: forwarding, hand-overs, node loss.

Starts the bank example's write handler, a fresh migrated schema, a Ray cluster of two
nodes on this machine (``ray.cluster_utils.Cluster``) and the runtime on it, one shard host
per node. Every command goes to host A's port (the head node's host). Then, in turn:

1. forward: bench/load.py's closed-loop load, half the workers on accounts whose shards
   host A owns (served where the call lands), half on accounts host B owns (forwarded to
   B), in one window. Throughput and latency of each group, and their ratio.
2. handover: per trial a third node joins (its host registers and the coordinator hands
   it a share of the shards) and leaves again (its shards are handed back), under light
   load on host A. The time of each hand-over and the slowest command around it.
3. failover: per trial a third node joins and is killed with no goodbye. The time until
   its shards are owned by live hosts and answer a command sent to host A.

Prints figures and passes no judgement. Run: ``python bench/cluster.py [--only forward]``.
The cluster and the runtime are set up in bench/cluster_setup.py; the results and the
report are in bench/cluster_report.py.
"""

from __future__ import annotations

import os

# Ray puts every node on the loopback address when this is 0; read when Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import argparse
import asyncio
import contextlib
import math
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import psutil
import ray
from cluster_report import (
    FailoverTrial,
    ForwardResult,
    HandoverTrial,
    Report,
    format_report,
    setup_lines,
)
from cluster_setup import (
    PARTS,
    RAY_TIMEOUT,
    TABLE_PAUSE,
    BenchError,
    ClusterBenchSettings,
    Deployment,
    Joined,
    Span,
    add_node,
    fresh_schema,
    join,
    leave,
    node_info,
    owners_of,
    start_cluster,
    start_cos,
    start_handler,
    take_sigterm,
    wait_balanced,
)
from load import LoadSettings, bank_pb2, check_balances, pack_command, run_groups
from processes import MachineCpuMeter, StartupError

from chief_of_state.v1 import service_pb2, service_pb2_grpc
from cos.sharding import shard_of

LIGHT_WORKERS = 8  # the hand-over part's load
LIGHT_PER_SHARD = 4  # its accounts per shard, so that every shard that moves is loaded
SETTLE_SECONDS = 1.0  # load before and after each hand-over
# How long a failover trial's node runs before it is killed. Killed right after joining,
# its shards took about 2 s longer to move on this machine (5.5-6.5 s against 7.5-8 s).
UPTIME_SECONDS = 3.0
PROBE_TIMEOUT = 2.0  # deadline of one failover probe
PROBE_PAUSE = 0.05  # between failover probes of one shard
FAILOVER_LIMIT = 60.0  # seconds after a kill before the bench gives up
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


# -- accounts ------------------------------------------------------------------------------


def ids_on_shards(
    prefix: str, num_shards: int, shards: Collection[int], per_shard: int
) -> dict[int, list[str]]:
    """``per_shard`` account ids on each of ``shards``: ``prefix-0``, ``prefix-1``, ...
    as they fall."""
    found: dict[int, list[str]] = {shard: [] for shard in shards}
    index = 0
    while any(len(ids) < per_shard for ids in found.values()):
        entity_id = f"{prefix}-{index}"
        index += 1
        ids = found.get(shard_of(entity_id, num_shards))
        if ids is not None and len(ids) < per_shard:
            ids.append(entity_id)
    return found


def deal(ids_by_shard: dict[int, list[str]], workers: int) -> list[list[str]]:
    """The accounts dealt out to ``workers`` in turn, so each gets some of every shard."""
    ids = [entity_id for ids in ids_by_shard.values() for entity_id in ids]
    return [ids[worker::workers] for worker in range(workers)]


async def open_accounts(stub: service_pb2_grpc.ChiefOfStateServiceStub, ids: list[str]) -> None:
    """Opens each account once; BenchError if one cannot be."""
    command = pack_command(bank_pb2.OpenAccount(owner="bench", initial_balance=0))
    for entity_id in ids:
        request = service_pb2.ProcessCommandRequest(entity_id=entity_id, command=command)
        try:
            await stub.ProcessCommand(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            raise BenchError(f"could not open {entity_id}: {exc.code().name}") from exc


# -- part 1: forwarded against local commands ----------------------------------------------


async def measure_forwarding(dep: Deployment, settings: ClusterBenchSettings) -> ForwardResult:
    """Half the workers on host A's accounts, half on host B's; every call sent to host A."""
    owners = await wait_balanced(dep)
    num_shards, workers = dep.settings.cluster.num_shards, settings.concurrency // 2
    home = [shard for shard, host_id in owners.items() if host_id == dep.home]
    away = [shard for shard, host_id in owners.items() if host_id != dep.home]
    prefix = f"fw-{uuid.uuid4().hex[:6]}"
    groups: dict[str, list[list[str]]] = {}
    for name, shards in (("local", home), ("forwarded", away)):
        per_shard = math.ceil(settings.entities / 2 / len(shards))
        groups[name] = deal(
            ids_on_shards(f"{prefix}-{name}", num_shards, shards, per_shard), workers
        )
    machine = MachineCpuMeter()
    load = LoadSettings(dep.address, duration=settings.duration, warmup=settings.warmup)
    print(f"forward: {settings.concurrency} workers on host A for {settings.duration:.0f} s")
    loads = await run_groups(load, groups, machine.mark_start, machine.mark_end)
    balances = {k: v for result in loads.values() for k, v in result.balances.items()}
    matched, problems = await check_balances(dep.address, balances)
    return ForwardResult(workers, loads, matched, problems, machine.busy_cores)


# -- part 2: hand-over time under light load -----------------------------------------------


class _JoinAndLeave:
    """The two hand-overs of one trial, run while the light load goes on."""

    def __init__(self, dep: Deployment, node: dict[str, Any]) -> None:
        self._dep = dep
        self._node = node
        self.joined: Joined | None = None
        self.left: Span | None = None

    async def run(self) -> None:
        """Join, let the load settle, leave, let it settle again."""
        self.joined = await asyncio.to_thread(join, self._dep, self._node)
        await asyncio.sleep(SETTLE_SECONDS)
        self.left = await asyncio.to_thread(leave, self._dep, self.joined.host_id)
        await asyncio.sleep(SETTLE_SECONDS)


async def handover_trial(dep: Deployment, trial: int) -> HandoverTrial:
    """Adds a node, joins and leaves it under light load, removes it."""
    await wait_balanced(dep)
    node = add_node(dep.cluster)  # blocks the loop, but no load runs yet
    try:
        steps = _JoinAndLeave(dep, await asyncio.to_thread(node_info, node))
        num_shards = dep.settings.cluster.num_shards
        prefix = f"ho{trial}-{uuid.uuid4().hex[:6]}"
        ids = ids_on_shards(prefix, num_shards, range(num_shards), LIGHT_PER_SHARD)
        load = LoadSettings(dep.address, warmup=SETTLE_SECONDS, trace=True)
        groups = {"light": deal(ids, LIGHT_WORKERS)}
        result = (await run_groups(load, groups, until=steps.run))["light"]
    finally:
        await asyncio.to_thread(dep.cluster.remove_node, node)
    assert steps.joined is not None and steps.left is not None, "run() completed"
    matched, _ = await check_balances(dep.address, result.balances)
    opened = sum(1 for balance in result.balances.values() if balance is not None)
    return HandoverTrial(LIGHT_WORKERS, steps.joined, steps.left, result.calls, matched, opened)


# -- part 3: failover after a node is lost -------------------------------------------------


@dataclass(frozen=True)
class Victim:
    """A third node and its host, to be killed."""

    node: Any
    host_id: str
    pid: int
    lost: list[int]  # the shards its host owns
    probes: list[str]  # an account on each of them


async def start_victim(dep: Deployment, trial: int) -> Victim:
    """Adds a node with a host and waits until it owns its share of the shards."""
    await wait_balanced(dep)
    node = add_node(dep.cluster)
    joined = await asyncio.to_thread(join, dep, await asyncio.to_thread(node_info, node))
    owners = await wait_balanced(dep)
    lost = sorted(shard for shard, host_id in owners.items() if host_id == joined.host_id)
    prefix = f"fo{trial}-{uuid.uuid4().hex[:6]}"
    probes = ids_on_shards(prefix, dep.settings.cluster.num_shards, lost, 1)
    host = dep.runtime.hosts[joined.host_id]
    pid = int(await asyncio.to_thread(ray.get, host.pid.remote(), timeout=RAY_TIMEOUT))
    return Victim(node, joined.host_id, pid, lost, [probes[shard][0] for shard in lost])


async def failover_trial(dep: Deployment, trial: int) -> FailoverTrial:
    """Kills a third node with no goodbye; times the way back to every shard served."""
    victim = await start_victim(dep, trial)
    async with grpc.aio.insecure_channel(dep.address) as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        await open_accounts(stub, victim.probes)
        await asyncio.sleep(UPTIME_SECONDS)
        killed = time.perf_counter()
        await asyncio.to_thread(dep.cluster.remove_node, victim.node, False)
        dep.runtime.forget(victim.host_id)
        watch = asyncio.ensure_future(watch_table(dep, victim, killed + FAILOVER_LIMIT))
        try:
            gone = await wait_exit(victim.pid, killed + FAILOVER_LIMIT)
            # Probes start once the old host has exited, so that it cannot be what answers.
            answered = await asyncio.gather(
                *(probe(stub, entity_id, killed + FAILOVER_LIMIT) for entity_id in victim.probes)
            )
            moved = await watch
        finally:
            watch.cancel()
    served = max(moved, *answered)
    return FailoverTrial(len(victim.lost), gone - killed, moved - killed, served - killed)


async def watch_table(dep: Deployment, victim: Victim, deadline: float) -> float:
    """When the table had given all the victim's shards to live hosts."""
    while True:
        owners = await owners_of(dep)
        now = time.perf_counter()
        if all(owners.get(shard) not in (None, victim.host_id) for shard in victim.lost):
            return now
        if now > deadline:
            raise BenchError(f"shards {victim.lost} not owned again after {FAILOVER_LIMIT:.0f} s")
        await asyncio.sleep(TABLE_PAUSE)


async def wait_exit(pid: int, deadline: float) -> float:
    """When the process ``pid`` had exited (``time.perf_counter``)."""
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return time.perf_counter()
        except psutil.NoSuchProcess:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise BenchError(f"the killed node's host (pid {pid}) is still running")
        await asyncio.sleep(0.01)


async def probe(
    stub: service_pb2_grpc.ChiefOfStateServiceStub, entity_id: str, deadline: float
) -> float:
    """Deposits into ``entity_id`` until one succeeds; when it did (``time.perf_counter``)."""
    command = pack_command(bank_pb2.Deposit(amount=1))
    request = service_pb2.ProcessCommandRequest(entity_id=entity_id, command=command)
    while True:
        try:
            await stub.ProcessCommand(request, timeout=PROBE_TIMEOUT)
            return time.perf_counter()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE:
                raise BenchError(f"probe {entity_id}: {exc.code().name} {exc.details()}") from exc
        if time.perf_counter() > deadline:
            raise BenchError(f"{entity_id} not served {FAILOVER_LIMIT:.0f} s after the kill")
        await asyncio.sleep(PROBE_PAUSE)


# -- the run -------------------------------------------------------------------------------


async def run_parts(dep: Deployment, settings: ClusterBenchSettings, report: Report) -> None:
    """The chosen parts in order, each result into ``report`` as soon as it is known."""
    if "forward" in settings.only:
        report.forward = await measure_forwarding(dep, settings)
    if "handover" in settings.only:
        for trial in _trials("handover", settings.trials):
            report.handovers.append(await handover_trial(dep, trial))
    if "failover" in settings.only:
        for trial in _trials("failover", settings.trials):
            report.failovers.append(await failover_trial(dep, trial))


def _trials(part: str, count: int) -> Iterator[int]:
    for trial in range(1, count + 1):
        print(f"{part}: trial {trial} of {count}", flush=True)
        yield trial


def bench(settings: ClusterBenchSettings, report: Report) -> None:
    """Starts everything, runs the parts into ``report``, stops everything (also on error)."""
    print(f"logs in {settings.log_dir}", flush=True)
    with contextlib.ExitStack() as stack:
        handler_port = start_handler(settings, stack)
        target = fresh_schema(settings, stack)
        cluster = start_cluster(stack)
        dep = start_cos(cluster, settings, handler_port, target, stack)
        report.setup = setup_lines(dep, cluster)
        print("\n".join(report.setup), flush=True)
        asyncio.run(run_parts(dep, settings, report))


# -- command line --------------------------------------------------------------------------


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part {unknown[0]!r}; choose from {PARTS}")
    return parts


def _parse_args(argv: list[str] | None = None) -> ClusterBenchSettings:
    defaults = ClusterBenchSettings(log_dir=Path())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--concurrency", type=int, default=defaults.concurrency, help="part 1: calls in flight")
    add("--duration", type=float, default=defaults.duration, help="part 1: measured seconds")
    add("--warmup", type=float, default=defaults.warmup, help="part 1: unmeasured seconds")
    add("--entities", type=int, default=defaults.entities, help="part 1: accounts")
    add("--trials", type=int, default=defaults.trials, help="parts 2 and 3: trials each")
    add("--only", type=_parts, action="append", help=f"parts to run, of {', '.join(PARTS)}")
    add("--db-host", default=defaults.db_host, help="PostgreSQL host")
    add("--db-port", type=int, default=defaults.db_port, help="PostgreSQL port")
    add("--db-user", default=defaults.db_user, help="PostgreSQL user")
    add("--db-password", help="PostgreSQL password (default: none, or PGPASSWORD)")
    add("--db-name", default=defaults.db_name, help="PostgreSQL database")
    add("--num-shards", type=int, default=defaults.num_shards, help="shards of the runtime")
    add(
        "--host-failure-timeout",
        type=float,
        default=defaults.host_failure_timeout,
        help="host_failure_timeout_seconds of the runtime",
    )
    add("--keep-schemas", action="store_true", help="leave the run's schema in the database")
    args = vars(parser.parse_args(argv))
    chosen = {part for parts in args.pop("only") or [PARTS] for part in parts}
    args["only"] = tuple(part for part in PARTS if part in chosen)
    if args["concurrency"] < 2 or args["concurrency"] % 2:
        parser.error("--concurrency must be even: half the workers local, half forwarded")
    if args["entities"] < args["concurrency"] or args["trials"] < 1:
        parser.error("--entities must be at least --concurrency, --trials at least 1")
    return replace(ClusterBenchSettings(), **args)


def main() -> None:
    """Parses the command line, runs the benchmark, prints the report."""
    settings = _parse_args()
    take_sigterm()
    report = Report(settings)
    failure = None
    try:
        bench(settings, report)
    except (StartupError, BenchError) as exc:
        failure = f"bench: {exc}"
    except KeyboardInterrupt:
        failure = "bench: interrupted; cluster, runtime and handler stopped"
    finally:
        print()
        print(format_report(report), flush=True)
    if failure is not None:
        sys.exit(failure)


if __name__ == "__main__":
    main()
