"""What in the environment has no effect, said at start-up (cos.environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cos.environment import OBSOLETE, environment_warnings, read_side_lines
from cos.settings import load_settings
from tests.support.environment import REQUIRED, clean_env

__all__ = ["clean_env"]  # the autouse fixture, for pytest


@pytest.mark.parametrize("name", sorted(OBSOLETE))
def test_each_obsolete_variable_gets_one_warning_saying_why(name: str) -> None:
    warnings = environment_warnings(load_settings(), {**REQUIRED, name: "x"})
    assert warnings == [f"{name} has no effect: {OBSOLETE[name]}"]


def test_a_misspelt_variable_is_named_with_the_closest_setting() -> None:
    environ = {**REQUIRED, "COS_SNAPSHOT_FREQENCY": "5", "COS_WRITESIDE_HOST": "h"}
    assert environment_warnings(load_settings(), environ) == [
        "COS_SNAPSHOT_FREQENCY is not a setting and has no effect"
        " (did you mean COS_SNAPSHOT_FREQUENCY?)",
        "COS_WRITESIDE_HOST is not a setting and has no effect (did you mean COS_WRITE_SIDE_HOST?)",
    ]


def test_settings_and_read_side_variables_are_not_warned_about() -> None:
    environ = {
        **REQUIRED,
        "COS_DB_POOL_MAX_SIZE": "4",
        "LOG_STYLE": "JSON",
        "POD_IP": "10.0.0.1",
        "COS_TEST_DATABASE_URL": "postgresql://x",
    }
    assert environment_warnings(load_settings(), environ) == []


def test_read_side_variables_beside_a_config_file_are_ignored_and_said_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text("readSideId: from-file\nhost: h\nport: 1\n")
    variables = {
        "COS_READ_SIDE_CONFIG__HOST__READSIDE_1": "h2",
        "COS_READ_SIDE_CONFIG__PORT__READSIDE_1": "2",
    }
    for name, value in {
        **variables,
        "COS_READ_SIDE_ENABLED": "true",
        "COS_READ_SIDE_CONFIG": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert [r.read_side_id for r in settings.read_side.read_sides] == ["from-file"]
    (warning,) = environment_warnings(settings, {**REQUIRED, **variables})
    assert warning.startswith("COS_READ_SIDE_CONFIG is set, so the 2 COS_READ_SIDE_CONFIG__*")
    assert read_side_lines(settings) == [
        "read side from-file: handler h:1, failurePolicy=none (retry forever), autoStart=true,"
        " enabled=true, timeout=60000 ms"
    ]


def test_read_sides_enabled_without_any_or_configured_but_disabled_are_warned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COS_READ_SIDE_ENABLED", "true")
    assert environment_warnings(load_settings(), REQUIRED) == [
        "COS_READ_SIDE_ENABLED=true but no read side is configured"
    ]
    monkeypatch.setenv("COS_READ_SIDE_ENABLED", "false")
    environ = {**REQUIRED, "COS_READ_SIDE_CONFIG__HOST__A": "h"}
    assert environment_warnings(load_settings(), environ) == [
        "read sides are configured but COS_READ_SIDE_ENABLED is not true: none runs"
    ]


@pytest.mark.parametrize(("given", "seen"), [(None, "false"), ("true", "true")])
def test_importing_cos_turns_grpc_fork_support_off_unless_the_operator_set_it(
    given: str | None, seen: str
) -> None:
    # On, gRPC restarts its threads in the forked child of a Popen with a preexec_fn (how
    # Ray starts raylets); a crash there killed a joining node's raylet 3 s after it started.
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    if given is not None:
        env["GRPC_ENABLE_FORK_SUPPORT"] = given
    code = "import os, cos, grpc; print(os.environ['GRPC_ENABLE_FORK_SUPPORT'])"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == seen
