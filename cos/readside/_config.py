"""Read-side configuration, the Chief of State way: YAML documents or
``COS_READ_SIDE_CONFIG__<SETTING>__<READSIDE_ID>`` environment variables.

As in Chief of State 2.5.7 (``ReadSideServiceStarter``) it is one or the other: when
``COS_READ_SIDE_CONFIG`` names a file or folder, only the YAML counts and the variables
are ignored; the variables are read only when it is unset. Parsing is pure: callers
pass the environment mapping; only :func:`yaml_files` and :func:`load_read_sides`
look at files.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_ENV_PREFIX = "COS_READ_SIDE_CONFIG__"
# Environment setting names and the YAML keys they stand for.
_ENV_SETTINGS = {
    "HOST": "host",
    "PORT": "port",
    "USE_TLS": "useTls",
    "TIMEOUT": "timeout",
    "AUTO_START": "autoStart",
    "ENABLED": "enabled",
    "FAILURE_POLICY": "failurePolicy",
    "PROTOCOL": "protocol",
}
_KNOWN_KEYS = {"readSideId", *_ENV_SETTINGS.values()}


class ReadSideConfigError(ValueError):
    """A read side is misconfigured; the message names the read side and the setting."""


class FailurePolicy(enum.Enum):
    """What a runner does when the handler fails on an event."""

    STOP = "STOP"  # stop at the event until an operator skips or restarts
    SKIP = "SKIP"  # move past the event at once
    REPLAY_SKIP = "REPLAY_SKIP"  # retry up to five times, then skip
    REPLAY_STOP = "REPLAY_STOP"  # retry up to five times, then stop


REPLAY_ATTEMPTS = 5


@dataclass(frozen=True)
class ReadSideConfig:
    """One read side: where its handler is and how delivery behaves."""

    read_side_id: str
    host: str
    port: int
    use_tls: bool = False
    timeout_ms: int | None = None  # None: COS_GRPC_CALLS_TIMEOUT
    auto_start: bool = True
    enabled: bool = True
    failure_policy: FailurePolicy | None = None


def _bool(read_side: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise ReadSideConfigError(
        f"read side {read_side!r}: {key} must be true or false, got {value!r}"
    )


def _positive_int(read_side: str, key: str, value: object, upper: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number <= 0 or (upper is not None and number > upper):
        raise ReadSideConfigError(
            f"read side {read_side!r}: {key} must be a positive integer"
            + (f" up to {upper}" if upper else "")
            + f", got {value!r}"
        )
    return number


def parse_read_side(values: Mapping[str, object], source: str) -> ReadSideConfig:
    """Validate one read side's settings (YAML keys) into a :class:`ReadSideConfig`."""
    read_side = str(values.get("readSideId") or "").strip()
    if not read_side or not _ID.match(read_side):
        raise ReadSideConfigError(
            f"{source}: readSideId must be letters, digits, '-' or '_', "
            f"got {values.get('readSideId')!r}"
        )
    unknown = sorted(set(values) - _KNOWN_KEYS)
    if unknown:
        raise ReadSideConfigError(
            f"read side {read_side!r}: unknown setting(s) {', '.join(unknown)}"
        )
    protocol = str(values.get("protocol", "grpc")).lower()
    if protocol != "grpc":
        raise ReadSideConfigError(
            f"read side {read_side!r}: protocol {protocol!r} is not supported (grpc only)"
        )
    host = str(values.get("host") or "").strip()
    if not host:
        raise ReadSideConfigError(f"read side {read_side!r}: host is required")
    if values.get("port") in (None, ""):
        raise ReadSideConfigError(f"read side {read_side!r}: port is required")
    return ReadSideConfig(
        read_side_id=read_side,
        host=host,
        port=_positive_int(read_side, "port", values["port"], upper=65535),
        use_tls=_bool(read_side, "useTls", values.get("useTls", False)),
        timeout_ms=_timeout(read_side, values.get("timeout")),
        auto_start=_bool(read_side, "autoStart", values.get("autoStart", True)),
        enabled=_bool(read_side, "enabled", values.get("enabled", True)),
        failure_policy=_policy(read_side, values.get("failurePolicy")),
    )


def _timeout(read_side: str, value: object) -> int | None:
    if value in (None, ""):
        return None
    return _positive_int(read_side, "timeout", value)


def describe(config: ReadSideConfig, default_timeout_ms: int) -> str:
    """One line saying how a read side will run (logged at start-up)."""
    policy = config.failure_policy.value if config.failure_policy else "none (retry forever)"
    timeout = config.timeout_ms or default_timeout_ms
    return (
        f"read side {config.read_side_id}: handler {config.host}:{config.port}"
        f"{' (TLS)' if config.use_tls else ''}, failurePolicy={policy},"
        f" autoStart={str(config.auto_start).lower()}, enabled={str(config.enabled).lower()},"
        f" timeout={timeout} ms"
    )


def _policy(read_side: str, value: object) -> FailurePolicy | None:
    if value in (None, ""):
        return None
    try:
        return FailurePolicy(str(value).strip().upper())
    except ValueError:
        names = ", ".join(p.value for p in FailurePolicy)
        raise ReadSideConfigError(
            f"read side {read_side!r}: failurePolicy {value!r} is unknown (one of {names})"
        ) from None


def from_yaml(text: str, source: str) -> list[ReadSideConfig]:
    """Every read side of a YAML text (documents separated by ``---``)."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ReadSideConfigError(f"{source}: not valid YAML: {exc}") from None
    for document in documents:
        if not isinstance(document, dict):
            raise ReadSideConfigError(f"{source}: each YAML document must be a mapping of settings")
    return [parse_read_side(document, source) for document in documents]


def from_env(environ: Mapping[str, str]) -> list[ReadSideConfig]:
    """Read sides from ``COS_READ_SIDE_CONFIG__<SETTING>__<READSIDE_ID>`` variables."""
    grouped: dict[str, dict[str, object]] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX):
            continue
        setting, sep, read_side = name[len(_ENV_PREFIX) :].partition("__")
        if not sep or not read_side:
            raise ReadSideConfigError(f"{name}: expected {_ENV_PREFIX}<SETTING>__<READSIDE_ID>")
        key = _ENV_SETTINGS.get(setting.upper())
        if key is None:
            known = ", ".join(_ENV_SETTINGS)
            raise ReadSideConfigError(f"{name}: unknown setting {setting!r} (one of {known})")
        grouped.setdefault(read_side, {"readSideId": read_side})[key] = value
    return [
        parse_read_side(values, f"{_ENV_PREFIX}*__{rid}") for rid, values in sorted(grouped.items())
    ]


def yaml_files(path: Path) -> list[Path]:
    """The files ``COS_READ_SIDE_CONFIG`` names: the file, or every file under the folder.

    Like Chief of State, a folder is read recursively and every file in it counts,
    whatever its extension. Hidden entries are skipped: a Kubernetes ConfigMap volume
    holds each file twice, once behind its ``..data`` link.
    """
    if path.is_dir():
        return sorted(
            file
            for file in path.rglob("*")
            if file.is_file()
            and not any(part.startswith(".") for part in file.relative_to(path).parts)
        )
    if path.is_file():
        return [path]
    raise ReadSideConfigError(f"COS_READ_SIDE_CONFIG: {str(path)!r} is neither a file nor a folder")


def env_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``COS_READ_SIDE_CONFIG__*`` variable names in ``environ``, sorted."""
    return sorted(name for name in environ if name.startswith(_ENV_PREFIX))


def load_read_sides(config_path: str | None, environ: Mapping[str, str]) -> list[ReadSideConfig]:
    """All configured read sides: from ``config_path`` when it is set, else from the
    ``COS_READ_SIDE_CONFIG__*`` variables (never both, as in Chief of State). Refuses
    duplicate ids."""
    found: list[ReadSideConfig] = []
    if config_path:
        for file in yaml_files(Path(config_path)):
            try:
                text = file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ReadSideConfigError(
                    f"COS_READ_SIDE_CONFIG: cannot read {file}: {exc}"
                ) from None
            found.extend(from_yaml(text, str(file)))
    else:
        found.extend(from_env(environ))
    _refuse_duplicates(found)
    return found


def _refuse_duplicates(read_sides: Iterable[ReadSideConfig]) -> None:
    seen: set[str] = set()
    for config in read_sides:
        if config.read_side_id in seen:
            raise ReadSideConfigError(f"read side {config.read_side_id!r} is configured twice")
        seen.add(config.read_side_id)
