from __future__ import annotations

from pathlib import Path

import pytest

from cli.settings_help import settings_table
from cos.logs import LogSettings, LogStyle
from cos.settings import DeploymentMode, SettingsError, load_settings
from tests.support.environment import clean_env

__all__ = ["clean_env"]  # the autouse fixture, for pytest


def test_defaults_follow_chief_of_state() -> None:
    settings = load_settings()
    assert (
        settings.server.port,
        settings.cluster.num_shards,
        settings.shard.snapshot_frequency,
    ) == (9000, 16, 100)
    assert settings.journal.num_snapshots_to_retain == 2
    assert settings.shard.command_handler_timeout == 5.0  # seconds, as Chief of State documents
    assert settings.db.embedded
    assert settings.db.schema_ == "public"


def test_header_lists_are_comma_separated_and_lower_cased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COS_WRITE_SIDE_PROPAGATED_HEADERS", "X-Request-Id, x-user ,")
    assert load_settings().handler.propagated_headers == ("x-request-id", "x-user")


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


def test_chief_of_state_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "LOG_STYLE": "json",
        "LOG_LEVEL": "WARN",  # Chief of State's (logback's) spelling
        "COS_SERVICE_NAME": "accounts",
        "COS_GRPC_CALLS_TIMEOUT": "1500",
        "COS_DB_POOL_MIN_IDLE_CONNECTIONS": "3",
        "COS_DB_POOL_IDLE_TIMEOUT_MS": "2000",
        "COS_DB_POOL_MAX_LIFETIME_MS": "4000",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.logging == LogSettings(level="WARNING", style=LogStyle.JSON, service="accounts")
    assert settings.grpc.call_timeout_ms == 1500
    db = settings.db
    assert (db.pool_min_idle_connections, db.pool_idle_timeout_ms, db.pool_max_lifetime_ms) == (
        3,
        2000,
        4000,
    )


def test_chief_of_state_defaults_of_the_new_settings() -> None:
    settings = load_settings()
    assert settings.grpc.call_timeout_ms == 60_000  # ms, as Chief of State documents
    assert settings.logging.service == "chiefofstate"
    assert settings.deployment.deployment_mode is DeploymentMode.DOCKER
    assert (settings.db.pool_idle_timeout_ms, settings.db.pool_max_lifetime_ms) == (60_000, 120_000)


def test_kubernetes_mode_needs_its_label_and_pod_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COS_DEPLOYMENT_MODE", "Kubernetes")
    with pytest.raises(SettingsError, match="^COS_KUBERNETES_APP_LABEL: required when"):
        load_settings()
    monkeypatch.setenv("COS_KUBERNETES_APP_LABEL", "cos")
    with pytest.raises(SettingsError, match="^POD_IP: required when"):
        load_settings()
    monkeypatch.setenv("POD_IP", "10.0.0.7")
    assert load_settings().deployment.deployment_mode is DeploymentMode.KUBERNETES


def test_an_unknown_deployment_mode_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COS_DEPLOYMENT_MODE", "swarm")
    with pytest.raises(SettingsError, match="^COS_DEPLOYMENT_MODE: .*'swarm'"):
        load_settings()


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "cannot read the CA file"), (b"not a certificate", "not a PEM file")],
)
def test_an_unusable_write_side_ca_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes | None, needle: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("COS_WRITE_SIDE_USE_TLS", "true")
    monkeypatch.setenv("COS_WRITE_SIDE_TLS_CA_FILE", str(path))
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value).startswith("COS_WRITE_SIDE_TLS_CA_FILE: ")
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_help_table_shows_each_default() -> None:
    lines = {line.split()[0]: line for line in settings_table().splitlines()}
    assert lines["COS_NUM_SHARDS"].endswith(r"\[default: 16]")  # escaped Rich markup
    assert lines["COS_DB_PASSWORD"].endswith(r"\[default: empty]")
    assert lines["COS_WRITE_SIDE_HOST"].endswith(r"\[required]")
    assert lines["LOG_STYLE"].endswith(r"\[default: STANDARD]")
    assert all("default" in line or "required" in line for line in lines.values())


def test_a_password_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("from a file\n")
    monkeypatch.setenv("COS_DB_PASSWORD_FILE", str(tmp_path / "password"))
    assert load_settings().db.password.get_secret_value() == "from a file"
    monkeypatch.setenv("COS_DB_PASSWORD", "inline")
    with pytest.raises(SettingsError, match="^COS_DB_PASSWORD and COS_DB_PASSWORD_FILE are both"):
        load_settings()
    monkeypatch.delenv("COS_DB_PASSWORD")
    monkeypatch.setenv("COS_DB_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="^COS_DB_PASSWORD_FILE: cannot read .*missing"):
        load_settings()


def test_a_ray_token_can_come_from_a_file_and_secrets_are_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("ray-token-value")
    monkeypatch.setenv("COS_RAY_AUTH_TOKEN_FILE", str(tmp_path / "token"))
    settings = load_settings()
    assert settings.ray.auth_token is not None
    assert settings.ray.auth_token.get_secret_value() == "ray-token-value"
    assert "ray-token-value" not in repr(settings) + str(settings)
    assert "ray-token-value" not in settings_table()


def test_tls_files_go_together_and_must_be_pem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("COS_TLS_CERT_FILE", str(cert))
    with pytest.raises(SettingsError, match="COS_TLS_CERT_FILE and COS_TLS_KEY_FILE: set both"):
        load_settings()
    (tmp_path / "key.pem").write_text("not a key")
    monkeypatch.setenv("COS_TLS_KEY_FILE", str(tmp_path / "key.pem"))
    with pytest.raises(SettingsError, match=r"^COS_TLS_KEY_FILE: the file .* is not PEM"):
        load_settings()
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.setenv("COS_TLS_CLIENT_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match="^COS_TLS_CLIENT_CA_FILE: cannot read"):
        load_settings()
    monkeypatch.setenv("COS_TLS_CLIENT_CA_FILE", str(cert))
    tls = load_settings().tls.files
    assert tls is not None and tls.mutual and tls.trust_file == str(cert)


def test_a_tls_setting_without_a_certificate_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COS_TLS_SERVER_NAME", "cos.internal")
    with pytest.raises(SettingsError, match="^COS_TLS_SERVER_NAME: needs COS_TLS_CERT_FILE"):
        load_settings()


def test_database_tls_follows_libpq(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().db.tls_parameters() == ()  # prefer, asyncpg's default too
    monkeypatch.setenv("COS_DB_SSL_MODE", "Verify-Full")
    monkeypatch.setenv("COS_DB_SSL_ROOT_CERT", "/etc/pg/ca.pem")
    assert load_settings().db.tls_parameters() == (
        ("sslmode", "verify-full"),
        ("sslrootcert", "/etc/pg/ca.pem"),
    )
    monkeypatch.setenv("COS_DB_SSL_MODE", "sometimes")
    with pytest.raises(SettingsError, match="^COS_DB_SSL_MODE: .*'sometimes'"):
        load_settings()


def test_a_subscription_port_needs_subscriptions_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COS_SUBSCRIPTION_PORT", "9002")
    with pytest.raises(
        SettingsError, match="^COS_SUBSCRIPTION_PORT: needs COS_SUBSCRIPTION_ENABLED=true"
    ):
        load_settings()
    monkeypatch.setenv("COS_SUBSCRIPTION_ENABLED", "true")
    assert load_settings().subscription.port == 9002
