"""Footprint and start-up of a single node: what ``cos serve`` costs to run and to start.

Starts the bank example's write handler, then ``cos serve`` on a schema of its own: once
to migrate it (not counted), then ``--starts`` times warm, each timed from the spawn to the
first ProcessCommand answered (an OpenAccount). The last start stays up: the PSS and RSS of
every process of its tree are read (grouped by Ray's process title or the program's name),
idle and after ``--commands`` deposits. PSS counts a shared page once over the processes that
share it, so the sum of PSS is what the node costs the machine; RSS counts it in each.

Run: ``python bench/footprint.py [--starts 5] [--commands 2000] [--shards 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import replace

import grpc
import psutil
from load import bank_pb2, pack_command
from processes import process_label, process_tree
from rich.console import Console
from rich.table import Table
from run import (
    BenchSettings,
    Stub,
    drop_schemas,
    free_port,
    runtime_process,
    start_bank_handler,
    wait_ready,
)

from chief_of_state.v1 import service_pb2, service_pb2_grpc

MB = 1024 * 1024
Usage = dict[str, tuple[int, float, float, float]]  # label -> (processes, PSS, RSS, USS MB)


async def open_account(stub: Stub) -> None:
    """The probe of a start: a command answered, an account opened."""
    opening = bank_pb2.OpenAccount(owner="footprint", initial_balance=0)
    request = service_pb2.ProcessCommandRequest(
        entity_id=f"footprint-{uuid.uuid4().hex[:8]}", command=pack_command(opening)
    )
    await stub.ProcessCommand(request, timeout=2)


def usage(root_pid: int) -> Usage:
    """PSS and RSS of the tree under ``root_pid``, by process label."""
    found: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for process in process_tree(root_pid):
        try:
            memory = process.memory_full_info()
            label = process_label(process)
        except psutil.Error:
            continue  # gone meanwhile
        row = found[label]
        row[0] += 1
        row[1] += memory.pss / MB
        row[2] += memory.rss / MB
        row[3] += memory.uss / MB
    return {label: (int(n), pss, rss, uss) for label, (n, pss, rss, uss) in found.items()}


async def deposits(target: str, commands: int, workers: int = 16) -> None:
    """``commands`` deposits over ``workers`` accounts, one call at a time per account."""
    prefix = f"footprint-load-{uuid.uuid4().hex[:6]}"
    per_worker = commands // workers
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)

        async def work(worker: int) -> None:
            entity_id = f"{prefix}-{worker}"
            opening = bank_pb2.OpenAccount(owner="footprint", initial_balance=0)
            await stub.ProcessCommand(
                service_pb2.ProcessCommandRequest(
                    entity_id=entity_id, command=pack_command(opening)
                ),
                timeout=30,
            )
            deposit = pack_command(bank_pb2.Deposit(amount=1))
            for _ in range(per_worker):
                await stub.ProcessCommand(
                    service_pb2.ProcessCommandRequest(entity_id=entity_id, command=deposit),
                    timeout=30,
                )

        await asyncio.gather(*(work(w) for w in range(workers)))


def killed_as_group(pid: int) -> tuple[float, int]:
    """Seconds from SIGKILL of the process group of ``pid`` until no process of its tree
    runs, and how many of them were outside that group."""
    tree = process_tree(pid)
    outside = sum(1 for process in tree if os.getpgid(process.pid) != pid)
    began = time.monotonic()
    os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # cos serve is ours to reap; init reaps the rest
    while any(_running(process) for process in tree):
        time.sleep(0.005)
    return time.monotonic() - began, outside


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def usage_table(idle: Usage, loaded: Usage, commands: int) -> Table:
    """PSS idle and loaded, RSS and USS loaded (USS: the pages no other process maps,
    what stopping the process would give back)."""
    table = Table(title=f"cos serve's process tree, idle and after {commands} commands")
    columns = ("process", "count", "PSS idle", "PSS loaded", "RSS loaded", "USS loaded")
    for column in columns:
        table.add_column(column, justify="left" if column == "process" else "right")
    empty = (0, 0.0, 0.0, 0.0)
    order = sorted(set(idle) | set(loaded), key=lambda k: -loaded.get(k, idle.get(k, empty))[1])
    for label in order:
        n, pss_idle, _, _ = idle.get(label, empty)
        m, pss, rss, uss = loaded.get(label, empty)
        figures = (pss_idle, pss, rss, uss)
        table.add_row(label, str(max(n, m)), *(f"{figure:.0f}" for figure in figures))
    sums = [sum(v[1] for v in idle.values())]
    sums += [sum(v[i] for v in loaded.values()) for i in (1, 2, 3)]
    table.add_row("sum", "", *(f"{figure:.0f}" for figure in sums), style="bold")
    return table


async def footprint(settings: BenchSettings, starts: int, commands: int) -> None:
    console = Console(width=120)  # a fixed width, so that a log file keeps whole names
    handler, handler_port = await start_bank_handler(settings)
    schema = f"bench_fp_{uuid.uuid4().hex[:8]}"
    seconds: list[float] = []
    try:
        for attempt in range(starts + 1):  # the first migrates the schema
            port = free_port()
            server = runtime_process(settings, port, handler_port, schema, name="runtime")
            began = time.monotonic()
            server.start()
            try:
                target = f"127.0.0.1:{port}"
                await wait_ready(server, target, settings.startup_timeout, open_account, 0.02)
                took = time.monotonic() - began
                if attempt:
                    seconds.append(took)
                what = "migrates the schema" if attempt == 0 else "warm"
                console.print(f"start {attempt} ({what}): {took:.2f} s")
                if attempt == starts:
                    await asyncio.sleep(3)  # what start-up left behind settles
                    idle = usage(server.pid)
                    await deposits(target, commands)
                    await asyncio.sleep(1)
                    console.print(usage_table(idle, usage(server.pid), commands))
                    took, outside = killed_as_group(server.pid)
                    console.print(
                        f"SIGKILL to cos serve's process group: every process gone after"
                        f" {took * 1000:.0f} ms ({outside} of them outside the group)"
                    )
            finally:
                server.stop(timeout=30)
        console.print(
            f"warm start to the first answered command: median {statistics.median(seconds):.2f}"
            f" s, min {min(seconds):.2f}, max {max(seconds):.2f} ({starts} starts)"
        )
    finally:
        handler.stop(timeout=10)
        if not settings.keep_schemas:
            await drop_schemas(settings, [schema])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="warm starts timed (5)")
    parser.add_argument("--commands", type=int, default=2000, help="deposits of the load")
    parser.add_argument("--shards", type=int, default=8, help="COS_NUM_SHARDS (8)")
    args = parser.parse_args()
    if args.starts < 1 or args.commands < 16:
        sys.exit("footprint: --starts must be at least 1 and --commands at least 16")
    settings = replace(BenchSettings(), num_shards=args.shards)
    asyncio.run(footprint(settings, args.starts, args.commands))


if __name__ == "__main__":
    main()
