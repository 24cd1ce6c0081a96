"""The settings table shown by ``cos serve --help`` (pure formatting)."""

from __future__ import annotations

import enum

from pydantic import SecretStr
from rich.markup import escape

from cos.config import Part
from cos.settings import PARTS, settings_variables


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


def setting_rows(part: type[Part]) -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting of ``part``; the default is
    empty for a required setting."""
    rows = []
    for variable, field in settings_variables(part).items():
        info = part.model_fields[field]
        default = "" if info.is_required() else format_default(info.get_default())
        rows.append((variable, default, info.description or ""))
    return rows


def all_setting_rows() -> list[tuple[str, str, str]]:
    """The rows of every part of the runtime's settings."""
    return [row for part in PARTS.values() for row in setting_rows(part)]


def settings_table() -> str:
    """One line per environment variable: name, description, default (Rich markup,
    escaped: ``cos serve --help`` renders it)."""
    rows = all_setting_rows()
    width = max(len(env) for env, _, _ in rows)
    lines = [
        escape(f"{env:<{width}}  {desc}" + (f" [default: {d}]" if d else " [required]"))
        for env, d, desc in rows
    ]
    return "\n".join(lines)
