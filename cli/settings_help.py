"""The settings table shown by ``cos serve --help`` (pure formatting)."""

from __future__ import annotations

import enum

from pydantic import SecretStr
from pydantic_settings import BaseSettings
from rich.markup import escape

from cos.settings import CosSettings, DatabaseSettings, env_name


def format_default(value: object) -> str:
    """A default as it would be written in the environment."""
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "empty" if not value.get_secret_value() else "(set)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    return str(value)


def setting_rows(model: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting of ``model``; the default is
    empty for a required setting."""
    rows = []
    for name, info in model.model_fields.items():
        if name in ("db", "read_sides", "telemetry"):
            continue
        default = (
            ""
            if info.is_required()
            else format_default(info.get_default(call_default_factory=False))
        )
        rows.append((env_name(model, name), default, info.description or ""))
    return rows


def settings_table() -> str:
    """One line per environment variable: name, description, default (Rich markup,
    escaped: ``cos serve --help`` renders it)."""
    rows = setting_rows(CosSettings) + setting_rows(DatabaseSettings)
    width = max(len(env) for env, _, _ in rows)
    lines = [
        escape(f"{env:<{width}}  {desc}" + (f" [default: {d}]" if d else " [required]"))
        for env, d, desc in rows
    ]
    return "\n".join(lines)
