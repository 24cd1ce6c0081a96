"""What in the environment has no effect, said at start-up one line each: variables
Chief of State no longer reads, typos of settings, and read-side configuration that
will not be used. The rest of the environment is :mod:`cos.settings`'.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

from cos.readside import describe, env_variables
from cos.settings import CosSettings, known_variables

# Variables Chief of State documented once and no longer reads, or that have no
# meaning here, with what to do instead.
OBSOLETE = {
    "COS_DB_CREATE_TABLES": "tables are always created, by the migrations cos serve runs on"
    " start-up (Chief of State dropped this variable in 0.8)",
    "COS_EVENTS_BATCH_THRESHOLD": "Chief of State renamed it COS_SNAPSHOT_FREQUENCY in 0.8;"
    " set that instead",
    "COS_DB_DB": "the database name is COS_DB_NAME",
    "COS_ENCRYPTION_CLASS": "Chief of State has not read it since 0.6 and this runtime has no"
    " encryption plug-in; use PostgreSQL's encryption at rest",
    "COS_MIGRATIONS_INITIAL_VERSION": "it numbers Chief of State's own migrations; this"
    " runtime's tables are managed by its alembic migrations, which need no starting version",
}
# COS_* variables that are not runtime settings but are read by the project's tools.
_TOOL_VARIABLES = {"COS_TEST_DATABASE_URL"}
_READ_SIDE_PREFIX = "COS_READ_SIDE_CONFIG__"


def environment_warnings(
    settings: CosSettings, environ: Mapping[str, str] | None = None
) -> list[str]:
    """What in ``environ`` (default: the process environment) has no effect, one line
    each: obsolete and unknown ``COS_*`` variables (with the closest real name), and
    read-side configuration that is not used."""
    environ = os.environ if environ is None else environ
    known = known_variables()
    warnings = []
    for name in sorted(environ):
        if name in OBSOLETE:
            warnings.append(f"{name} has no effect: {OBSOLETE[name]}")
        elif (
            name.startswith("COS_")
            and name not in known
            and name not in _TOOL_VARIABLES
            and not name.startswith(_READ_SIDE_PREFIX)
        ):
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "see cos serve --help"
            warnings.append(f"{name} is not a setting and has no effect ({hint})")
    return warnings + _read_side_warnings(settings, environ)


def _read_side_warnings(settings: CosSettings, environ: Mapping[str, str]) -> list[str]:
    variables = env_variables(environ)
    read_side = settings.read_side
    if not read_side.enabled:
        if read_side.config or variables:
            return ["read sides are configured but COS_READ_SIDE_ENABLED is not true: none runs"]
        return []
    warnings = []
    if read_side.config and variables:
        warnings.append(
            f"COS_READ_SIDE_CONFIG is set, so the {len(variables)} COS_READ_SIDE_CONFIG__*"
            f" variables are ignored, as in Chief of State ({', '.join(variables[:3])}"
            f"{', ...' if len(variables) > 3 else ''})"
        )
    if not read_side.read_sides:
        warnings.append("COS_READ_SIDE_ENABLED=true but no read side is configured")
    return warnings


def read_side_lines(settings: CosSettings) -> list[str]:
    """One line per configured read side, as start-up logs them."""
    timeout = settings.grpc.call_timeout_ms
    return [describe(config, timeout) for config in settings.read_side.read_sides]
