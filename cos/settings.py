"""The runtime's configuration, read once from the ``COS_*`` environment at start-up.

Every component declares the settings it uses as a part (``cos.config.Part``) beside its
own code; :class:`CosSettings` gathers the parts of a node, and :func:`load_settings`
reads each from the environment, with the Chief of State names. The runtime hands each
component its part and nothing more; only the runtime and the CLI import this module.
The parts of the runtime itself (its server, Ray, the deployment) are here.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from cos.breaker import BreakerSettings, ReadSideBreakerSettings
from cos.config import Part, env_name, lower_case
from cos.http import HttpSettings, read_sets
from cos.logs import LogSettings
from cos.postgres import DatabaseSettings
from cos.readside import ReadSideConfigError, ReadSideSettings, load_read_sides
from cos.service import OperatorSettings
from cos.sharding import ClusterSettings
from cos.storage import JournalSettings
from cos.subscription import SubscriptionSettings
from cos.telemetry import TelemetryConfig, TelemetryConfigError, TelemetrySettings
from cos.tls import TlsSettings
from cos.transport import GrpcSettings
from cos.writeside import HandlerSettings, ShardSettings

P = TypeVar("P", bound=BaseModel)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class DeploymentMode(str, enum.Enum):
    """``COS_DEPLOYMENT_MODE``, as Chief of State names it."""

    DOCKER = "docker"
    KUBERNETES = "kubernetes"


class ServerSettings(Part):
    """Where a node's gRPC server listens, and how long its calls get to finish."""

    address: str = Field("0.0.0.0", description="address the gRPC server binds")
    port: int = Field(9000, gt=0, lt=65536, description="gRPC port of ChiefOfStateService")
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="time in-flight commands get to finish on shutdown"
    )


class DeploymentSettings(Part):
    """How the nodes are deployed: by hand or in containers, or in Kubernetes, where the
    cluster forms from the runtime's pods."""

    deployment_mode: Annotated[DeploymentMode, BeforeValidator(lower_case)] = Field(
        DeploymentMode.DOCKER,
        description="docker or kubernetes (kubernetes: POD_IP is advertised)",
    )
    replica_count: int = Field(
        1, ge=1, description="nodes expected in the cluster (kubernetes cluster formation)"
    )
    kubernetes_app_label: str | None = Field(
        None, description="app label of the runtime's pods (required in kubernetes mode)"
    )
    pod_ip: str | None = Field(
        None, alias="POD_IP", description="this pod's IP (kubernetes mode; set by the chart)"
    )
    kubernetes_namespace: str | None = Field(
        None,
        description="namespace of the runtime's pods (kubernetes mode; default: the pod's own)",
    )
    kubernetes_formation_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="longest wait for COS_REPLICA_COUNT pods before the first shard assignment",
    )

    @property
    def kubernetes(self) -> bool:
        """Whether the nodes run as the pods of a Kubernetes deployment."""
        return self.deployment_mode is DeploymentMode.KUBERNETES

    @model_validator(mode="after")
    def _kubernetes_needs(self) -> DeploymentSettings:
        if self.kubernetes:
            for name in ("kubernetes_app_label", "pod_ip"):
                if not getattr(self, name):
                    variable = env_name(DeploymentSettings, name)
                    raise ValueError(f"{variable}: required when COS_DEPLOYMENT_MODE=kubernetes")
        return self


class RaySettings(Part):
    """The Ray cluster the node starts or joins (``COS_RAY_*``)."""

    env_prefix = "COS_RAY_"

    address: str | None = Field(None, description="Ray cluster to join; unset = start a local Ray")
    temp_dir: str | None = Field(
        None, description="--temp-dir of the Ray node to join, when several share one machine"
    )
    gcs_reconnect_timeout_seconds: int = Field(
        60,
        gt=0,
        description="how long Ray processes outlive a lost Ray head (its GCS) before exiting",
    )
    auth_token: SecretStr | None = Field(
        None, description="Ray's cluster token (token authentication; default: Ray's own)"
    )
    auth_token_file: str | None = Field(
        None, description="file holding Ray's cluster token (instead of COS_RAY_AUTH_TOKEN)"
    )


class CosSettings(BaseModel):
    """Everything ``cos serve`` needs, by part; each part goes to what uses it."""

    model_config = ConfigDict(frozen=True)

    handler: HandlerSettings
    db: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    cluster: ClusterSettings = ClusterSettings()
    shard: ShardSettings = ShardSettings()
    journal: JournalSettings = JournalSettings()
    handler_breaker: BreakerSettings = BreakerSettings()
    grpc: GrpcSettings = GrpcSettings()
    read_side: ReadSideSettings = ReadSideSettings()
    read_side_breaker: ReadSideBreakerSettings = ReadSideBreakerSettings()
    subscription: SubscriptionSettings = SubscriptionSettings()
    http: HttpSettings = HttpSettings()
    tls: TlsSettings = TlsSettings()
    operator: OperatorSettings = OperatorSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    deployment: DeploymentSettings = DeploymentSettings()
    ray: RaySettings = RaySettings()
    logging: LogSettings = LogSettings()


# Every part, by its name in CosSettings (the order of cos serve --help).
PARTS: dict[str, type[Part]] = {
    name: cast(type[Part], info.annotation) for name, info in CosSettings.model_fields.items()
}


def settings_variables(part: type[Part]) -> dict[str, str]:
    """The environment variable of each field of ``part`` that is read from one."""
    return {
        env_name(part, field): field
        for field, info in part.model_fields.items()
        if not info.exclude
    }


def known_variables() -> set[str]:
    """Every environment variable that is a setting of the runtime."""
    return {variable for part in PARTS.values() for variable in settings_variables(part)}


def settings_from(values: Mapping[str, object]) -> CosSettings:
    """Settings from ``values``, keyed by environment variable (``COS_NUM_SHARDS``) or, for
    what no variable sets, by ``part.field`` (``read_side.read_sides``); every other
    setting keeps its default. Raises :class:`SettingsError` naming the variable."""
    left = dict(values)
    parts = {}
    for name, part in PARTS.items():
        given = {
            field: left.pop(variable)
            for variable, field in settings_variables(part).items()
            if variable in left
        }
        given |= {
            field: left.pop(f"{name}.{field}")
            for field in part.model_fields
            if f"{name}.{field}" in left
        }
        if given or name == "handler":
            parts[name] = _validated(part, given)
    if left:
        raise SettingsError(f"not settings of the runtime: {', '.join(sorted(left))}")
    return CosSettings(**parts)


def replaced(settings: CosSettings, values: Mapping[str, object]) -> CosSettings:
    """``settings`` with ``values`` (keyed as :func:`settings_from` keys them) set."""
    current: dict[str, object] = {}
    for name, part in PARTS.items():
        chosen = getattr(settings, name)
        for variable, field in settings_variables(part).items():
            current[variable] = getattr(chosen, field)
        for field, info in part.model_fields.items():
            if info.exclude:
                current[f"{name}.{field}"] = getattr(chosen, field)
    return settings_from({**current, **values})


def _validated(part: type[P], values: Mapping[str, object]) -> P:
    try:
        return part.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_one_line(part, exc)) from None


def read_part(part: type[P]) -> P:
    """One part, read from the environment; raises :class:`SettingsError` naming the
    variable."""
    prefix = getattr(part, "env_prefix", "")
    reader = type(
        f"{part.__name__}FromEnvironment",
        (BaseSettings, part),
        {"model_config": SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True)},
    )
    try:
        found = reader()
    except ValidationError as exc:
        raise SettingsError(_one_line(part, exc)) from None
    # The part itself, not the reader: it travels to other processes by pickle.
    return part.model_validate(dict(found))


def _one_line(part: type[BaseModel], error: ValidationError) -> str:
    first = error.errors()[0]
    if not first["loc"]:  # a check of the whole part: its message names the variables
        return str(first["msg"]).removeprefix("Value error, ")
    field = str(first["loc"][0])
    fields = {info.alias: name for name, info in part.model_fields.items() if info.alias}
    field = fields.get(field, field)
    name = env_name(part, field) if field in part.model_fields else field
    if first["type"] == "missing":
        return f"{name}: required but not set"
    message = str(first["msg"]).removeprefix("Value error, ")
    info = part.model_fields.get(field)
    if info is not None and "SecretStr" in str(info.annotation):
        return f"{name}: {message}"  # never echo a secret
    return f"{name}: {message} (got {first.get('input')!r})"


def read_secret_file(variable: str, path: str, inline_set: bool) -> SecretStr:
    """The secret in ``path`` (the value of ``<variable>_FILE``), trailing newline
    dropped. Refuses both forms at once: which one should win would be a guess."""
    if inline_set:
        raise SettingsError(f"{variable} and {variable}_FILE are both set: keep one")
    try:
        return SecretStr(Path(path).read_text().rstrip("\r\n"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise SettingsError(f"{variable}_FILE: cannot read {path!r}: {reason}") from None


def load_database_settings() -> DatabaseSettings:
    """``COS_DB_*``, the password from its file when one is given."""
    db = read_part(DatabaseSettings)
    if db.password_file is None:
        return db
    inline = bool(db.password.get_secret_value())
    password = read_secret_file("COS_DB_PASSWORD", db.password_file, inline)
    return db.model_copy(update={"password": password})


def load_log_settings() -> LogSettings:
    """``LOG_LEVEL``, ``LOG_STYLE`` and ``COS_SERVICE_NAME`` alone."""
    return read_part(LogSettings)


def load_settings(environ: Mapping[str, str] | None = None) -> CosSettings:
    """Read the whole configuration; raise :class:`SettingsError` naming the bad variable
    (or the read side and its setting). Files the settings name are read here, once: the
    secrets, the read sides' YAML and the HTTP API's descriptor sets (a set that cannot
    be read is a ``DescriptorsError``)."""
    environ = os.environ if environ is None else environ
    parts: dict[str, BaseModel] = {"db": load_database_settings()}
    parts |= {name: read_part(part) for name, part in PARTS.items() if name != "db"}
    settings = CosSettings.model_validate(parts)
    http = settings.http
    if http.served and http.proto_descriptors:
        http = http.model_copy(update={"descriptor_sets": read_sets(http.proto_descriptors)})
    return settings.model_copy(
        update={
            "ray": _with_secret(settings.ray, "COS_RAY_AUTH_TOKEN", "auth_token"),
            "operator": _with_secret(settings.operator, "COS_ADMIN_TOKEN", "token"),
            "telemetry": _with_otel(settings.telemetry, environ),
            "read_side": _with_read_sides(settings.read_side, environ),
            "http": http,
        }
    )


def _with_secret(part: P, variable: str, field: str) -> P:
    path = getattr(part, f"{field}_file")
    if path is None:
        return part
    secret = read_secret_file(variable, path, getattr(part, field) is not None)
    return part.model_copy(update={field: secret})


def _with_otel(part: TelemetrySettings, environ: Mapping[str, str]) -> TelemetrySettings:
    try:
        otel = TelemetryConfig.from_environment(environ)
    except TelemetryConfigError as exc:
        raise SettingsError(str(exc)) from None
    return part.model_copy(update={"otel": otel})


def _with_read_sides(part: ReadSideSettings, environ: Mapping[str, str]) -> ReadSideSettings:
    if not part.enabled:
        return part
    try:
        read_sides = load_read_sides(part.config, environ)
    except ReadSideConfigError as exc:
        raise SettingsError(str(exc)) from None
    return part.model_copy(update={"read_sides": tuple(read_sides)})
