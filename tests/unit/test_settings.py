from __future__ import annotations

import pytest

from cli.settings_help import settings_table
from cos.settings import SettingsError, load_settings

REQUIRED = {"COS_WRITE_SIDE_HOST": "handler", "COS_WRITE_SIDE_PORT": "50051"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("COS_") or key == "LOG_LEVEL":
            monkeypatch.delenv(key)
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)


def test_defaults_follow_chief_of_state() -> None:
    settings = load_settings()
    assert (settings.port, settings.num_shards, settings.snapshot_frequency) == (9000, 16, 100)
    assert settings.num_snapshots_to_retain == 2
    assert settings.command_handler_timeout == 5.0  # seconds, as Chief of State documents
    assert settings.db.embedded
    assert settings.db.schema_ == "public"


def test_header_lists_are_comma_separated_and_lower_cased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COS_WRITE_SIDE_PROPAGATED_HEADERS", "X-Request-Id, x-user ,")
    assert load_settings().write_side_propagated_headers == ("x-request-id", "x-user")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COS_NUM_SHARDS", "0"),
        ("COS_PORT", "http"),
        ("COS_DB_PORT", "-1"),
        ("COS_DB_SCHEMA", "drop table"),
        ("COS_COMMAND_HANDLER_TIMEOUT", "soon"),
        ("COS_WRITE_SIDE_USE_TLS", "maybe"),
        ("LOG_LEVEL", "chatty"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(f"{name}: ")
    assert repr(value) in message
    assert "\n" not in message


def test_missing_required_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COS_WRITE_SIDE_PORT")
    with pytest.raises(SettingsError, match="^COS_WRITE_SIDE_PORT: required but not set$"):
        load_settings()


def test_help_table_lists_every_variable() -> None:
    table = settings_table()
    for name in ("COS_PORT", "COS_DB_SCHEMA", "COS_EMBEDDED_DB_DIR", "LOG_LEVEL", "COS_NUM_SHARDS"):
        assert name in table
