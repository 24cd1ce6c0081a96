"""Rendering the chart with `helm template` (no cluster) and looking into what comes out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import ROOT

CHART = ROOT / "helm" / "cos-ray"
BIN = Path(sys.executable).parent
HELM = BIN / "helm"
# The install example of the chart's README.
EXAMPLE = (
    "writeSide.host=my-handler",
    "writeSide.port=50051",
    "database.host=pg",
    "database.existingSecret=pg-cred",
)
HEAD_ADDRESS = "rel-cos-ray-head-0.rel-cos-ray-ray.shop.svc.cluster.local:6379"

Manifest = dict[str, Any]
# Two read sides, as a values file gives them.
READ_SIDES: Manifest = {
    "readSides": {
        "accounts-view": {
            "host": "read-handler",
            "port": 50053,
            "timeout": 5000,
            "failurePolicy": "REPLAY_SKIP",
        },
        "audit": {
            "host": "audit-handler",
            "port": 50054,
            "useTls": True,
            "autoStart": False,
            "enabled": False,
            "protocol": "grpc",
        },
    }
}


def helm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert HELM.exists(), f"{HELM} is missing: run scripts/install.sh"
    return subprocess.run(
        [str(HELM), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def template_args(sets: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    args = ["template", "rel", str(CHART), "--namespace", "shop", *extra]
    for assignment in sets:
        args += ["--set", assignment]
    return args


def render(
    *sets: str,
    example: tuple[str, ...] = EXAMPLE,
    extra: tuple[str, ...] = (),
    values: Manifest | None = None,
) -> list[Manifest]:
    """The chart's objects for ``example`` plus ``sets``, and a values file's content
    (which ``--set`` overrides)."""
    args = template_args((*example, *sets), extra)
    if values is None:
        done = helm(*args)
    else:
        done = helm(*args, "--values", "-", stdin=yaml.safe_dump(values))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_error(*sets: str, example: tuple[str, ...] = EXAMPLE) -> str:
    """helm's error for values that must be refused."""
    done = helm(*template_args((*example, *sets), ()))
    assert done.returncode != 0, f"rendered although it should not: {sets}"
    return done.stderr


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_of(manifests: list[Manifest], role: str) -> Manifest:
    spec: Manifest = find(manifests, "StatefulSet", f"rel-cos-ray-{role}")["spec"]["template"]
    return spec


def container_of(manifests: list[Manifest], role: str) -> Manifest:
    containers: list[Manifest] = pod_of(manifests, role)["spec"]["containers"]
    assert [c["name"] for c in containers] == ["cos"]
    return containers[0]


def env_of(manifests: list[Manifest], role: str) -> dict[str, Manifest]:
    env: list[Manifest] = container_of(manifests, role)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env: {names}"
    return {e["name"]: e for e in env}


def script_of(manifests: list[Manifest], role: str) -> str:
    container = container_of(manifests, role)
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]
    assert isinstance(script, str)
    return script


def isolate_environment(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """Replace the process environment's settings by ``environ`` for this test."""
    for name in list(os.environ):
        if name.startswith(("COS_", "LOG_", "POD_", "RAY_")):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def environment_of(manifests: list[Manifest], role: str, unknown: str) -> dict[str, str]:
    """The role's environment as its container gets it: ConfigMap keys resolved from the
    rendered ConfigMaps, anything else from the API (Secrets, the downward API) as
    ``unknown``."""
    resolved = {}
    for name, var in env_of(manifests, role).items():
        ref = var.get("valueFrom", {}).get("configMapKeyRef")
        if ref is not None:
            resolved[name] = find(manifests, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            resolved[name] = var.get("value", unknown)
    return resolved
