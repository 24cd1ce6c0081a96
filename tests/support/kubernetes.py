"""The local Kubernetes of the tests (scripts/kubernetes-local.sh): how to reach it, and
handler processes where its pods reach them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.processes import ROOT, Process

LOCAL = ROOT / "scripts/kubernetes-local.sh"
IMAGE = "localhost/cos-ray:test"


def local(*args: str, timeout: float = 1800) -> str:
    done = subprocess.run(
        ["bash", str(LOCAL), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"kubernetes-local.sh {args}: {done.stdout}{done.stderr}"[-4000:]
    return done.stdout.strip()


@dataclass(frozen=True)
class Cluster:
    """The running Kubernetes: how to reach it and where pods reach this machine."""

    kubeconfig: str
    node_ip: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def run(self, tool: str, *args: str, timeout: float = 600, check: bool = True) -> str:
        binary = tool if tool == "kubectl" else str(ROOT / ".venv/bin" / tool)
        done = subprocess.run(
            [binary, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout

    def kubectl(self, *args: str, **kwargs: object) -> str:
        return self.run("kubectl", *args, **kwargs)  # type: ignore[arg-type]

    def helm(self, *args: str, **kwargs: object) -> str:
        return self.run("helm", *args, **kwargs)  # type: ignore[arg-type]


def serve_on_node(script: str, cluster: Cluster) -> Iterator[int]:
    """A handler script (``--host``/``--port`` flags) listening on the node's address, where
    pods reach it; yields its port."""
    command = [sys.executable, str(ROOT / script), "--host", cluster.node_ip, "--port", "0"]
    process = Process(command)
    yield int(process.wait_for(r"listening on [\d.]+:(\d+)", timeout=30).group(1))
    process.stop()
