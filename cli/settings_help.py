"""The settings table shown by ``cos serve --help`` (pure formatting)."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from cos.settings import CosSettings, DatabaseSettings


def setting_rows(model: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting of ``model``."""
    prefix = str(model.model_config.get("env_prefix", ""))
    rows = []
    for name, info in model.model_fields.items():
        if name in ("db", "read_sides"):
            continue
        env = info.alias or f"{prefix}{name}".upper()
        default = "" if info.is_required() else repr(info.get_default(call_default_factory=False))
        rows.append((env, default, info.description or ""))
    return rows


def settings_table() -> str:
    """One line per environment variable: name, default, description."""
    rows = setting_rows(CosSettings) + setting_rows(DatabaseSettings)
    width = max(len(env) for env, _, _ in rows)
    lines = [
        f"{env:<{width}}  {desc}" + (f" [default: {d}]" if d else " [required]")
        for env, d, desc in rows
    ]
    return "\n".join(lines)
