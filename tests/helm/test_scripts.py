"""The containers' start scripts: read, and run with fake `ray`, `cos`, `python3` and `sleep`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.chart import HEAD_ADDRESS, render, script_of

# --- the start scripts --------------------------------------------------------------------


def test_the_head_starts_ray_as_head_then_becomes_cos_serve() -> None:
    lines = script_of(render(), "head").splitlines()
    (start,) = [line for line in lines if line.startswith("ray start")]
    assert "--head" in start.split()
    for flag in (
        '--node-ip-address="$POD_IP"',
        "--port=6379",
        "--num-cpus=1",
        "--object-store-memory=268435456",
        "--disable-usage-stats",
        "--include-dashboard=false",
        "--no-monitor",
        "--include-log-monitor=false",
    ):
        assert flag in start.split(), flag
    config = start.split("--system-config=", 1)[1]
    assert json.loads(config.strip("'")) == {
        "health_check_period_ms": 1000,
        "health_check_failure_threshold": 6,
    }
    assert lines[-1] == "exec cos serve --address auto"


def test_a_worker_joins_the_head_by_its_dns_name_then_becomes_cos_serve() -> None:
    script = script_of(render(), "worker")
    assert f'head="{HEAD_ADDRESS}"' in script
    assert "socket.create_connection" in script
    (start,) = [line for line in script.splitlines() if line.startswith("ray start")]
    assert '--address="$head"' in start and "--head" not in start
    assert "--system-config" not in start
    assert script.splitlines()[-1] == "exec cos serve --address auto"
    other = script_of(render("clusterDomain=k8s.example", "ray.port=7000"), "worker")
    assert "rel-cos-ray-head-0.rel-cos-ray-ray.shop.svc.k8s.example:7000" in other


@pytest.fixture
def fake_tools(tmp_path: Path) -> Path:
    """A folder with fake `ray`, `cos`, `python3` and `sleep` recording how they ran: `cos`
    its pid, the others their arguments. The fake `python3` fails once (the head is not up
    yet), then succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {
        "ray": 'echo "$@" >> "$LOG/ray"',
        "cos": 'echo "$$ $*" > "$LOG/cos"',
        "sleep": 'echo "$@" >> "$LOG/sleep"',
        "python3": '[ -e "$LOG/python3" ] && exit 0; echo "$@" > "$LOG/python3"; exit 1',
    }
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return bin_dir


def run_script(script: str, bin_dir: Path) -> tuple[subprocess.Popen[str], str]:
    log = bin_dir.parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "POD_IP": "10.1.2.3", "LOG": str(log)}
    process = subprocess.Popen(
        ["/bin/sh", "-c", script], env=env, stdout=subprocess.PIPE, text=True
    )
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    return process, out


def test_the_head_script_execs_cos_serve_in_place_of_the_shell(fake_tools: Path) -> None:
    process, _ = run_script(script_of(render(), "head"), fake_tools)
    log = fake_tools.parent
    assert (
        (log / "ray").read_text().startswith("start --head --node-ip-address=10.1.2.3 --port=6379")
    )
    # exec: `cos serve` is the container's process itself, so SIGTERM reaches it.
    assert (log / "cos").read_text().split() == [str(process.pid), "serve", "--address", "auto"]


def test_the_worker_script_waits_for_the_head(fake_tools: Path) -> None:
    process, out = run_script(script_of(render(), "worker"), fake_tools)
    log = fake_tools.parent
    assert out == f"waiting for the Ray head at {HEAD_ADDRESS}\n"
    assert (log / "sleep").read_text() == "2\n"
    assert (log / "python3").read_text().split()[-1] == HEAD_ADDRESS
    assert (log / "ray").read_text().split() == [
        "start",
        f"--address={HEAD_ADDRESS}",
        "--node-ip-address=10.1.2.3",
        "--num-cpus=1",
        "--object-store-memory=268435456",
        "--disable-usage-stats",
        "--include-log-monitor=false",
    ]
    assert (log / "cos").read_text().split() == [str(process.pid), "serve", "--address", "auto"]


def test_the_wait_answers_only_when_the_port_does() -> None:
    script = script_of(render(), "worker")
    program = script.split("python3 -c '", 1)[1].split("'", 1)[0]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        up = subprocess.run([sys.executable, "-c", program, f"127.0.0.1:{port}"], check=False)
    down = subprocess.run(
        [sys.executable, "-c", program, f"127.0.0.1:{port}"], capture_output=True, check=False
    )
    assert (up.returncode, down.returncode != 0) == (0, True)
