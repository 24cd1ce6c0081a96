from __future__ import annotations

from pathlib import Path

import pytest

from cos.readside.config import (
    FailurePolicy,
    ReadSideConfig,
    ReadSideConfigError,
    from_env,
    from_yaml,
    load_read_sides,
)

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
    assert audit.timeout_ms == 30_000


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


def test_folder_of_files_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("readSideId: a\nhost: h\nport: 1\n")
    (tmp_path / "b.yaml").write_text("readSideId: b\nhost: h\nport: 2\n")
    (tmp_path / "notes.txt").write_text("not yaml at all: [")
    assert [c.read_side_id for c in load_read_sides(str(tmp_path), {})] == ["a", "b"]
    env = {"COS_READ_SIDE_CONFIG__HOST__a": "h", "COS_READ_SIDE_CONFIG__PORT__a": "3"}
    with pytest.raises(ReadSideConfigError, match="'a' is configured twice"):
        load_read_sides(str(tmp_path), env)
    with pytest.raises(ReadSideConfigError, match="neither a file nor a folder"):
        load_read_sides(str(tmp_path / "missing.yml"), {})
