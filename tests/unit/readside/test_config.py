from __future__ import annotations

from pathlib import Path

import pytest

from cos.readside import ReadSideConfigError, describe, load_read_sides
from cos.readside._config import FailurePolicy, ReadSideConfig, from_env, from_yaml

TWO = """
readSideId: accounts
host: handler
port: 50053
timeout: 2500
failurePolicy: replay_skip
---
readSideId: audit_log
host: audit
port: "50054"
useTls: true
autoStart: false
enabled: "false"
"""


def test_yaml_documents_become_read_sides() -> None:
    accounts, audit = from_yaml(TWO, "f.yml")
    assert accounts == ReadSideConfig(
        "accounts", "handler", 50053, timeout_ms=2500, failure_policy=FailurePolicy.REPLAY_SKIP
    )
    assert (audit.port, audit.use_tls, audit.auto_start, audit.enabled) == (
        50054,
        True,
        False,
        False,
    )
    assert audit.failure_policy is None
    assert audit.timeout_ms is None  # COS_GRPC_CALLS_TIMEOUT applies


def test_environment_variables_become_read_sides() -> None:
    env = {
        "COS_READ_SIDE_CONFIG__HOST__DB_WRITER": "db-writer",
        "COS_READ_SIDE_CONFIG__PORT__DB_WRITER": "50053",
        "COS_READ_SIDE_CONFIG__AUTO_START__DB_WRITER": "false",
        "COS_READ_SIDE_CONFIG__FAILURE_POLICY__DB_WRITER": "STOP",
        "COS_OTHER": "ignored",
    }
    (config,) = from_env(env)
    assert config == ReadSideConfig(
        "DB_WRITER", "db-writer", 50053, auto_start=False, failure_policy=FailurePolicy.STOP
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("readSideId: 'has space'\nhost: h\nport: 1", "readSideId"),
        ("readSideId: x\nport: 1", "read side 'x': host is required"),
        ("readSideId: x\nhost: h", "read side 'x': port is required"),
        ("readSideId: x\nhost: h\nport: 70000", "read side 'x': port"),
        (
            "readSideId: x\nhost: h\nport: 1\nfailurePolicy: RETRY",
            "read side 'x': failurePolicy 'RETRY'",
        ),
        ("readSideId: x\nhost: h\nport: 1\ntimeout: soon", "read side 'x': timeout"),
        ("readSideId: x\nhost: h\nport: 1\nautoStart: maybe", "read side 'x': autoStart"),
        ("readSideId: x\nhost: h\nport: 1\nprotocol: http", "read side 'x': protocol 'http'"),
        ("readSideId: x\nhost: h\nport: 1\nhots: typo", "read side 'x': unknown setting(s) hots"),
        ("- just a list", "mapping"),
    ],
)
def test_bad_settings_name_the_read_side_and_the_setting(text: str, needle: str) -> None:
    with pytest.raises(ReadSideConfigError) as error:
        from_yaml(text, "f.yml")
    assert needle in str(error.value)


def test_unknown_environment_setting_is_named() -> None:
    with pytest.raises(ReadSideConfigError, match="unknown setting 'HOTS'"):
        from_env({"COS_READ_SIDE_CONFIG__HOTS__X": "h"})


def test_a_folder_is_read_recursively_whatever_the_extension(tmp_path: Path) -> None:
    # As Chief of State reads it: every file under the folder, hidden entries aside
    # (a ConfigMap volume has each file again under ..data).
    (tmp_path / "a.yml").write_text("readSideId: a\nhost: h\nport: 1\n")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b.conf").write_text("readSideId: b\nhost: h\nport: 2\n")
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "a.yml").write_text("readSideId: a\nhost: h\nport: 1\n")
    assert [c.read_side_id for c in load_read_sides(str(tmp_path), {})] == ["a", "b"]
    (tmp_path / "c.yml").write_text("readSideId: a\nhost: other\nport: 3\n")
    with pytest.raises(ReadSideConfigError, match="'a' is configured twice"):
        load_read_sides(str(tmp_path), {})
    with pytest.raises(ReadSideConfigError, match="neither a file nor a folder"):
        load_read_sides(str(tmp_path / "missing.yml"), {})


def test_a_config_file_wins_over_the_variables_as_in_chief_of_state(tmp_path: Path) -> None:
    file = tmp_path / "read-sides.yaml"
    file.write_text("readSideId: from-file\nhost: h\nport: 1\n")
    env = {
        "COS_READ_SIDE_CONFIG__HOST__READSIDE_1": "h",
        "COS_READ_SIDE_CONFIG__PORT__READSIDE_1": "3",
    }
    assert [c.read_side_id for c in load_read_sides(str(file), env)] == ["from-file"]
    assert [c.read_side_id for c in load_read_sides(None, env)] == ["READSIDE_1"]
    assert [c.read_side_id for c in load_read_sides("", env)] == ["READSIDE_1"]


def test_a_read_side_without_a_timeout_takes_the_calls_timeout() -> None:
    (config,) = from_yaml("readSideId: a\nhost: h\nport: 1\nuseTls: true", "f.yml")
    assert config.timeout_ms is None
    assert describe(config, 60_000) == (
        "read side a: handler h:1 (TLS), failurePolicy=none (retry forever), autoStart=true,"
        " enabled=true, timeout=60000 ms"
    )
