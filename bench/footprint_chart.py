"""Footprint of a head and a worker node as the Helm chart starts them: ``ray start`` with
the chart's flags, then ``cos serve --address``, two nodes on this machine.

Each node's processes are those of its ``ray start`` session (GCS, raylet, agents, the
actors the raylet starts) and its ``cos serve``; PSS and RSS are read as in
``footprint.py``, idle and after ``--commands`` deposits sent to the head's port (half of
them forwarded to the worker's shards).

Run: ``python bench/footprint_chart.py [--commands 2000] [--shards 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
from footprint import MB, Usage, deposits, open_account, usage_table
from processes import ServerProcess, process_label, process_tree
from rich.console import Console
from run import (
    BenchSettings,
    drop_schemas,
    free_port,
    runtime_process,
    start_bank_handler,
    wait_ready,
)

RAY = str(Path(sys.executable).parent / "ray")
# The chart's start script (helm/cos-ray/templates/_helpers.tpl), for two nodes on one
# machine: each with a temp dir of its own, on the loopback address.
HEAD_FLAGS = ["--include-dashboard=false", "--no-monitor", "--include-log-monitor=false"]
COMMON_FLAGS = ["--disable-usage-stats", "--num-cpus=1", "--node-ip-address=127.0.0.1"]
WORKER_FLAGS = ["--include-log-monitor=false"]
SYSTEM_CONFIG = {"health_check_period_ms": 1000, "health_check_failure_threshold": 6}


@dataclass
class ChartNode:
    """One ``ray start`` node (its processes share a session) and its ``cos serve``."""

    name: str
    temp_dir: str
    session: int
    serve: ServerProcess | None = None

    def processes(self) -> Iterator[psutil.Process]:
        seen = set()
        serve = [] if self.serve is None else process_tree(self.serve.pid)
        for process in [*psutil.process_iter(), *serve]:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if process.pid not in seen and (
                    os.getsid(process.pid) == self.session or process in serve
                ):
                    seen.add(process.pid)
                    yield process

    def usage(self) -> Usage:
        found: dict[str, list[float]] = {}
        for process in self.processes():
            try:
                memory, label = process.memory_full_info(), process_label(process)
            except psutil.Error:
                continue
            row = found.setdefault(label, [0, 0.0, 0.0, 0.0])
            row[0] += 1
            row[1] += memory.pss / MB
            row[2] += memory.rss / MB
            row[3] += memory.uss / MB
        return {k: (int(n), pss, rss, uss) for k, (n, pss, rss, uss) in found.items()}

    def stop(self) -> None:
        if self.serve is not None:
            self.serve.stop(timeout=30)
        for process in list(self.processes()):
            with contextlib.suppress(psutil.Error):
                process.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def ray_start(
    name: str, env: dict[str, str], head: str | None, monitors: bool
) -> tuple[ChartNode, str]:
    """A ``ray start`` node; returns it and the head's address. ``monitors``: as the chart
    started nodes before it left out Ray's monitors (for a before/after pair)."""
    temp_dir = tempfile.mkdtemp(prefix=f"cosfp-{name}-", dir="/tmp")
    args = [RAY, "start", *COMMON_FLAGS, f"--temp-dir={temp_dir}"]
    if head is None:
        head = f"127.0.0.1:{free_port()}"
        flags = ["--include-dashboard=false"] if monitors else HEAD_FLAGS
        args += ["--head", f"--port={head.split(':')[1]}", *flags]
        args += [f"--system-config={json.dumps(SYSTEM_CONFIG)}"]
    else:
        args += [f"--address={head}", *([] if monitors else WORKER_FLAGS)]
    started = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=120, start_new_session=True
    )
    if started.returncode != 0:
        raise RuntimeError(f"ray start failed:\n{started.stdout}{started.stderr}")
    session = _session_of(temp_dir)  # ray start's daemons share one
    return ChartNode(name, temp_dir, session), head


def _session_of(temp_dir: str) -> int:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "raylet/raylet" in cmdline and temp_dir in cmdline:
            return os.getsid(process.pid)
    raise RuntimeError(f"no raylet of {temp_dir}")


async def chart(settings: BenchSettings, commands: int, monitors: bool) -> None:
    console = Console(width=120)
    handler, handler_port = await start_bank_handler(settings)
    schema = f"bench_fpc_{uuid.uuid4().hex[:8]}"
    ray_env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # several nodes on one machine
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    nodes: list[ChartNode] = []
    cluster = f"fp{uuid.uuid4().hex[:6]}"
    try:
        head_address = None
        ports = {}
        for name in ("head", "worker"):  # the head's cos serve first: the coordinator's
            node, head_address = ray_start(name, ray_env, head_address, monitors)
            nodes.append(node)
            ports[name] = free_port()
            extra = {
                **{k: v for k, v in ray_env.items() if k.startswith("RAY_")},
                "COS_RAY_ADDRESS": "auto",
                "COS_RAY_TEMP_DIR": node.temp_dir,
                "COS_CLUSTER_NAME": cluster,
            }
            node.serve = runtime_process(
                settings, ports[name], handler_port, schema, extra, name=f"chart-{name}"
            )
            node.serve.start()
            await wait_ready(node.serve, f"127.0.0.1:{ports[name]}", 180, open_account, 0.1)
        await asyncio.sleep(3)
        idle = {node.name: node.usage() for node in nodes}
        await deposits(f"127.0.0.1:{ports['head']}", commands)
        await asyncio.sleep(1)
        for node in nodes:
            table = usage_table(idle[node.name], node.usage(), commands)
            table.title = f"the chart's {node.name} node, idle and after {commands} commands"
            console.print(table)
    finally:
        for node in reversed(nodes):
            node.stop()
        handler.stop(timeout=10)
        if not settings.keep_schemas:
            await drop_schemas(settings, [schema])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=2000, help="deposits of the load")
    parser.add_argument("--shards", type=int, default=8, help="COS_NUM_SHARDS (8)")
    parser.add_argument(
        "--with-monitors", action="store_true", help="ray start as the chart did before"
    )
    args = parser.parse_args()
    settings = replace(BenchSettings(), num_shards=args.shards)
    asyncio.run(chart(settings, args.commands, args.with_monitors))


if __name__ == "__main__":
    main()
