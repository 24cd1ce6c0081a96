"""A timeline of one ``cos serve`` start: when each phase of the driver began and ended, when
the node's actor logged its server started, and when the first command was answered.

The driver runs in a child process that wraps the runtime's start-up functions with
timestamps before it runs ``cos serve`` (nothing in the runtime is changed for it; the
functions of older versions are found too, so a copy of this folder run in an older
checkout gives the "before"). ``--py-spy FILE`` also records the driver with py-spy
(speedscope format, waits included) for a closer look.

Run: ``python bench/startup.py [--starts 3] [--py-spy FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parent's; the child imports only what cos serve does
    from rich.table import Table
    from run import BenchSettings

# The driver's start-up steps, by module and function, in either version of the runtime.
PHASES = {
    "cos.runtime._driver": ["_prepare_journal", "connect_ray", "join_node"],
    "cos.runtime._deploy": ["coordinator_of", "launch_host", "begin_launch", "register_host"],
}
_T0 = "COS_STARTUP_T0"


def _stamp(what: str) -> None:
    took = time.time() - float(os.environ[_T0])
    print(f"@@ {took:.3f} {what}", file=sys.stderr, flush=True)


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            _stamp(f"> {name}")
            try:
                return await function(*args, **kwargs)
            finally:
                _stamp(f"< {name}")

        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        _stamp(f"> {name}")
        try:
            return function(*args, **kwargs)
        finally:
            _stamp(f"< {name}")

    return timed


def child() -> None:
    """``cos serve`` with its start-up steps timed (after ``prepare_ray``, which must come
    before Ray is imported: the wrappers are installed once ``cos.runtime.run`` is
    looked up)."""
    _stamp("> python started")
    import cli.main as cli
    from cos import runtime

    _stamp("< python started")
    original = runtime.__getattr__

    def wrapped(name: str) -> Any:
        found = original(name)
        if name == "run":
            for module_name, names in PHASES.items():
                module = sys.modules.get(module_name) or __import__(module_name, fromlist=["x"])
                for function in names:
                    if hasattr(module, function):
                        setattr(module, function, _timed(function, getattr(module, function)))
        return found

    runtime.__getattr__ = wrapped
    sys.argv = ["cos", "serve"]
    cli.app()


async def one_start(
    settings: BenchSettings, handler_port: int, args: argparse.Namespace
) -> dict[str, float]:
    """Start cos serve once; returns each phase's start and end, and the first answer."""
    import grpc
    import psutil
    from footprint import open_account
    from run import free_port, runtime_env

    from chief_of_state.v1 import service_pb2_grpc

    port = free_port()
    env = {
        **os.environ,
        **runtime_env(settings, port, handler_port, args.schema),
        _T0: str(time.time()),
    }
    command = [sys.executable, __file__, "--child"]
    if args.py_spy:
        spy = str(Path(sys.executable).parent / "py-spy")
        # --idle: the driver mostly waits (on Ray's processes, the database, the actors).
        record = ["record", "--idle", "-r", "200", "-f", "speedscope", "-o", args.py_spy]
        command = [spy, *record, "--", *command]
    process = subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    marks: dict[str, float] = {}
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("@@ "):
            _, at, what = line.rstrip().split(" ", 2)
            marks.setdefault(what, float(at))
        elif "gRPC server started" in line:
            marks.setdefault("node actor: gRPC server started", time.time() - float(env[_T0]))
        elif "cos serve ready" in line:
            marks.setdefault("ready line", time.time() - float(env[_T0]))
            break
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        while True:
            try:
                await open_account(stub)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.01)
    marks["first command answered"] = time.time() - float(env[_T0])
    # cos serve itself: under py-spy, its child (py-spy then writes its file).
    serve = psutil.Process(process.pid)
    serve = next(iter(serve.children()), serve) if args.py_spy else serve
    serve.terminate()
    process.communicate(timeout=60)
    return marks


def timeline(runs: list[dict[str, float]]) -> Table:
    from rich.table import Table

    table = Table(title=f"cos serve's start, median of {len(runs)} warm starts (s from spawn)")
    for column in ("step", "began", "ended", "took"):
        table.add_column(column, justify="left" if column == "step" else "right")
    steps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for marks in runs:
        for what, at in marks.items():
            kind, _, step = what.partition(" ") if what[:2] in ("> ", "< ") else ("=", "", what)
            steps[step][kind].append(at)
    for step, kinds in sorted(
        steps.items(), key=lambda item: statistics.median(next(iter(item[1].values())))
    ):
        if "=" in kinds:
            table.add_row(step, "", f"{statistics.median(kinds['=']):.2f}", "")
            continue
        began, ended = statistics.median(kinds[">"]), statistics.median(kinds["<"])
        table.add_row(step, f"{began:.2f}", f"{ended:.2f}", f"{ended - began:.2f}")
    return table


async def main_async(args: argparse.Namespace) -> None:
    from rich.console import Console
    from run import BenchSettings, drop_schemas, start_bank_handler

    settings = replace(BenchSettings(), num_shards=8)
    handler, handler_port = await start_bank_handler(settings)
    args.schema = f"bench_start_{uuid.uuid4().hex[:8]}"
    try:
        await one_start(settings, handler_port, args)  # migrates the schema: not counted
        runs = [await one_start(settings, handler_port, args) for _ in range(args.starts)]
        Console(width=120).print(timeline(runs))
    finally:
        handler.stop(timeout=10)
        await drop_schemas(settings, [args.schema])


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        child()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="warm starts (3)")
    parser.add_argument("--py-spy", help="record the driver with py-spy to this file")
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
