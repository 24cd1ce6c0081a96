"""What the runtime's settings are made of: parts, and the value types they are written in.

Each component declares the settings it uses as a :class:`Part`: a frozen model whose
fields read the environment variables ``env_prefix + FIELD`` (or a field's alias, when
its name follows no prefix, as Chief of State's names sometimes do not). The part lives
beside the component that takes it, so the component is built from a few values in one
line and depends on nothing else of the configuration. ``cos.settings`` reads every part
from the environment once, at start-up; nothing else reads the environment.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_settings import NoDecode


class Part(BaseModel):
    """One component's settings: frozen, built by field name (tests, the runtime) or read
    from the environment by ``cos.settings``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    # The variables of the fields without an alias are this prefix and the field's name.
    env_prefix: ClassVar[str] = "COS_"


def env_name(part: type[BaseModel], field: str) -> str:
    """The environment variable of a part's field."""
    info = part.model_fields[field]
    if info.alias:
        return info.alias
    prefix = getattr(part, "env_prefix", "")
    return f"{prefix}{field}".upper()


def _split(value: object, *, lower: bool) -> object:
    if isinstance(value, str):
        items = (item.strip() for item in value.split(","))
        return tuple((item.lower() if lower else item) for item in items if item)
    return value


# A comma-separated list of request header names, lower case as gRPC metadata keys are.
HeaderList = Annotated[
    tuple[str, ...], NoDecode, BeforeValidator(lambda value: _split(value, lower=True))
]
# A comma-separated list of names kept as written (message types, certificate names).
NameList = Annotated[
    tuple[str, ...], NoDecode, BeforeValidator(lambda value: _split(value, lower=False))
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_UNIT_SECONDS = {
    **dict.fromkeys(("", "ms", "milli", "millis", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hour", "hours"), 3600.0),
}


def _duration(value: object) -> object:
    # Chief of State's duration settings (HOCON): "60s", "1m", "500ms"; a bare number is ms.
    # A number that is not text is a duration read already: seconds.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    found = _DURATION.match(value.lower()) if isinstance(value, str) else None
    if found is None or found.group(2) not in _UNIT_SECONDS:
        raise ValueError("must be a duration: a number of ms, or with a unit (500ms, 60s, 1m, 1h)")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


# Written as Chief of State writes durations ("60s", "1m", "500ms", or "500": ms); in
# seconds once read (and a number given in code is seconds).
Duration = Annotated[float, BeforeValidator(_duration)]


def lower_case(value: object) -> object:
    """A value compared without regard to case or surrounding blanks (enum settings)."""
    return value.strip().lower() if isinstance(value, str) else value
