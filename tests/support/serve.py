"""``cos serve`` and ``cos-cli`` as the tests run them: environment, settings, start,
refusal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc

from chief_of_state.v1 import service_pb2_grpc
from cos.settings import CosSettings, settings_from
from tests.support.processes import ROOT, Process

COS = [sys.executable, "-m", "cli.main"]
# The operator token of every runtime the tests start (COS_ADMIN_TOKEN), and how a
# test's gRPC call or cos-cli run presents it.
ADMIN_TOKEN = "test-operator-token"
OPERATOR_METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
CLIENT_SERVICE = "chief_of_state.v1.ChiefOfStateService"
# The services of a runtime's gRPC port, but health and reflection.
RUNTIME_SERVICES = frozenset(
    {
        CLIENT_SERVICE,
        "chief_of_state.v1.ReadSideManagerService",
        "cos.v1.ClusterService",
        "cos.v1.HistoryService",
        "cos.v1.ReadSideStatusService",
        "cos.v1.SubscriptionService",
    }
)


def serve_env(handler_port: int, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COS_", "RAY_ADDRESS"))}
    env.update(
        COS_WRITE_SIDE_HOST="127.0.0.1",
        COS_WRITE_SIDE_PORT=str(handler_port),
        COS_PORT=str(port),
        COS_ADDRESS="127.0.0.1",
        COS_NUM_SHARDS="4",
        COS_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    env.update(extra)
    return env


def refused_start(env: dict[str, str], timeout: float = 180) -> str:
    """Run ``cos serve``, which must refuse to start (within ``timeout`` seconds); returns
    its one ``cos:`` line (see :func:`one_line_failure`)."""
    result = subprocess.run(
        [*COS, "serve"], env=env, capture_output=True, text=True, timeout=timeout
    )
    return one_line_failure(result)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, no traceback, and exactly one ``cos:`` line, the last one; returns it."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("cos: ")] == lines[-1:], result.stderr
    return lines[-1]


class Serve:
    """A running ``cos serve`` with a sync client."""

    def __init__(self, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.process = Process([*COS, "serve"], env=env, cwd=cwd)
        self.process.wait_for(r"cos serve ready", timeout=180)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{env['COS_PORT']}")
        self.stub = service_pb2_grpc.ChiefOfStateServiceStub(self.channel)

    def stop(self) -> int:
        self.channel.close()
        return self.process.stop()


# Settings no environment variable sets, by the part that holds them.
_NOT_FROM_ENVIRONMENT = {
    "read_sides": "read_side.read_sides",
    "telemetry": "telemetry.otel",
    "descriptor_sets": "http.descriptor_sets",
}
_NOT_COS_PREFIXED = {"log_level": "LOG_LEVEL", "log_style": "LOG_STYLE", "pod_ip": "POD_IP"}


def cos_settings(**values: Any) -> CosSettings:
    """Settings for a test's runtime, each named as its environment variable is without
    ``COS_``, in lower case (``num_shards=4`` is ``COS_NUM_SHARDS=4``); ``read_sides``,
    ``telemetry`` and ``descriptor_sets`` set what no variable does. Validated as the
    environment is (``SettingsError`` naming the variable)."""
    named = {}
    for name, value in values.items():
        variable = _NOT_FROM_ENVIRONMENT.get(name) or _NOT_COS_PREFIXED.get(name)
        named[variable or f"COS_{name.upper()}"] = value
    return settings_from(named)


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "COS_ADMIN_TOKEN": ADMIN_TOKEN},
    )
