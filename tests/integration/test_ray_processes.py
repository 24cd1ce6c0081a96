"""What runs on a node: the Ray ``cos serve`` starts holds only what the runtime uses.

The processes left out are named here, so a Ray upgrade that brings one back fails this
test instead of quietly costing every node its memory.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from cos.postgres import DatabaseTarget
from tests.support.database import db_env
from tests.support.processes import free_port
from tests.support.serve import Serve, serve_env
from tests.support.waiting import wait_until

# Ray's processes the runtime does not start, by the program Ray runs for each.
LEFT_OUT = {
    "dashboard.py": "Ray's API server (the dashboard's head)",
    "monitor.py": "Ray's autoscaler monitor",
    "log_monitor.py": "Ray's log monitor (the actors write to cos serve's stderr)",
    "ray.util.client.server": "the Ray Client server",
}
# What a node runs: Ray's core, the raylet's two agents, the runtime's two actors.
RUNNING = {
    "gcs_server",
    "raylet",
    "ray::DashboardAgent",
    "ray::RuntimeEnvAgent",
    "ray::Node",
    "ray::CoordinatorProcess",
}


def label(process: psutil.Process) -> str:
    """Ray's title of a worker (``ray::Node``), else the program run: a Python script's
    file name, or the binary's."""
    argv: list[str] = process.cmdline()
    if argv and argv[0].startswith("ray::"):
        return argv[0].split()[0]
    words = [word for word in argv if not word.startswith("-")]
    if len(words) > 1 and Path(words[0]).name.startswith("python"):
        return Path(words[1]).name
    return Path(words[0]).name if words else str(process.name())


def tree_labels(pid: int) -> list[str]:
    labels = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            labels.append(label(process))
        except psutil.Error:
            continue  # ended meanwhile
    return labels


def alive(processes: list[psutil.Process]) -> list[str]:
    """Those of ``processes`` still running (a zombie has ended)."""
    running = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(f"{process.pid} {label(process)}")
        except psutil.Error:
            continue  # ended
    return running


async def test_a_node_runs_only_what_the_runtime_uses(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    serve = Serve(serve_env(write_handler, free_port(), **db_env(database)))
    serving.append(serve)
    labels = tree_labels(serve.process.proc.pid)
    assert set(labels) >= RUNNING, labels
    running = {program: what for program, what in LEFT_OUT.items() if program in labels}
    assert not running, f"started although the runtime does not use them: {running}"
    # Without the log monitor, the node's actor still logs where cos serve does.
    serve.process.wait_for(r"INFO  cos\.node - shard host .*: gRPC server started", timeout=10)
    # Once ready, cos serve becomes the watcher: the same process, without Ray in it.
    driver = psutil.Process(serve.process.proc.pid)
    watcher = ["-m", "cos.runtime.watcher"]
    await wait_until(lambda: driver.cmdline()[1:3] == watcher, 30, "cos serve to be the watcher")
    maps = Path(f"/proc/{driver.pid}/maps").read_text()
    assert "_raylet" not in maps, "Ray is still loaded in cos serve"


async def test_a_node_killed_as_a_group_leaves_nothing_running(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    serve = Serve(serve_env(write_handler, free_port(), **db_env(database)))
    serving.append(serve)
    pid = serve.process.proc.pid
    tree = psutil.Process(pid).children(recursive=True)
    assert {label(process) for process in tree} >= RUNNING
    # The actors run in process groups of their own, the subscription process in the
    # node actor's: SIGKILL to cos serve's group reaches none of them.
    assert {os.getpgid(p.pid) for p in tree if label(p).startswith("ray::")} - {pid}
    os.killpg(pid, signal.SIGKILL)
    serve.process.proc.wait()
    await wait_until(lambda: not alive(tree), timeout=30, what="every process of the node to end")


def test_cos_serve_whose_node_dies_says_so_and_exits_1(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    serve = Serve(serve_env(write_handler, free_port(), **db_env(database)))
    serving.append(serve)
    tree = psutil.Process(serve.process.proc.pid).children(recursive=True)
    (node,) = [process for process in tree if label(process) == "ray::Node"]
    node.kill()
    assert serve.process.proc.wait(timeout=60) == 1
    # Why: the host ended (or, killed before cos serve became the watcher, could not be
    # reached); either way an error line first.
    serve.process.wait_for(r"ERROR cos\.serve - .*the shard host", timeout=10)
    serve.process.wait_for(r"cos serve stopped \(a shard host failed\)", timeout=10)


async def test_a_stopped_node_leaves_nothing_running(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    serve = Serve(serve_env(write_handler, free_port(), **db_env(database)))
    serving.append(serve)
    tree = psutil.Process(serve.process.proc.pid).children(recursive=True)
    assert {label(process) for process in tree} >= RUNNING
    serving.remove(serve)
    assert serve.stop() == 0
    await wait_until(lambda: not alive(tree), timeout=30, what="every process of the node to end")
