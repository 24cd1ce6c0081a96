"""``ray start`` nodes and ``cos serve`` processes, as operators run them, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import psutil

from chief_of_state.v1 import service_pb2_grpc
from cos.runtime import FAST_NODE_FAILURE
from tests.support.processes import Process, free_port
from tests.support.serve import COS

RAY = str(Path(sys.executable).parent / "ray")
RAY_ENV = {
    # Not the tests' loopback-only mode: ray start refuses a second node in it.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
    # Token auth, as a secured cluster runs, with a token of the test's own. Left
    # unset, the mode depends on ~/.ray/auth_token (written by any local ray.init):
    # the head then requires the token and a joining node does not send it.
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}


class RayNode:
    """One ``ray start`` node; its processes share a session, which is how they are stopped."""

    def __init__(
        self, head_address: str | None, *, port: int | None = None, **extra_env: str
    ) -> None:
        # Socket paths live under the temp dir and must stay short.
        self.temp_dir = tempfile.mkdtemp(prefix="cosray-", dir="/tmp")
        args = [RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
        args += ["--temp-dir", self.temp_dir, "--disable-usage-stats"]
        args += ["--include-log-monitor", "false"]
        if head_address is None:
            self.address = f"127.0.0.1:{port or free_port()}"
            args += ["--head", "--port", self.address.split(":")[1]]
            # What the Helm chart leaves out of a head (docs/architecture.md).
            args += ["--include-dashboard", "false", "--no-monitor"]
            args += ["--ray-client-server-port", str(free_port())]
            args += ["--system-config", json.dumps(FAST_NODE_FAILURE)]
        else:
            self.address = head_address
            args += ["--address", head_address]
        env = {**os.environ, **RAY_ENV, **extra_env}
        started = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.session = started.pid
        output, _ = started.communicate(timeout=120)
        if started.returncode != 0:
            self.stop()
            raise AssertionError(f"ray start failed:\n{output}")

    def stop(self) -> None:
        """SIGKILL every process of the node (the session of its ``ray start``)."""
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getsid(process.pid) == self.session:
                    process.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class NodeServe:
    """``cos serve`` on one node, with a client on its port."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.args = args
        self.process = Process([*COS, "serve", *args], env=env)
        ready = self.process.wait_for(r"cos serve ready: (\S+) listening on", timeout=180)
        self.host_id = ready.group(1)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{env['COS_PORT']}")
        self.stub = service_pb2_grpc.ChiefOfStateServiceStub(self.channel)
