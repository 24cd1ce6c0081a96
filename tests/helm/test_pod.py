"""The pods the chart makes: their environment (loaded by the runtime's own settings), probes,
security, volumes, the database password, Ray's GCS fault tolerance and the read sides (parsed
by the runtime's own parser)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from cos.environment import environment_warnings
from cos.readside._config import FailurePolicy, ReadSideConfig, from_yaml
from cos.settings import DeploymentMode, load_settings
from tests.support.chart import (
    READ_SIDES,
    Manifest,
    container_of,
    env_of,
    environment_of,
    find,
    helm,
    isolate_environment,
    pod_of,
    render,
    render_error,
    script_of,
    template_args,
)

# --- the container ----------------------------------------------------------------------


def test_the_environment_names_the_runtime_settings() -> None:
    manifests = render()
    env = env_of(manifests, "worker")
    assert {k: v["value"] for k, v in env.items() if "value" in v} == {
        "HOME": "/tmp",
        "COS_DEPLOYMENT_MODE": "kubernetes",
        "COS_KUBERNETES_APP_LABEL": "rel-cos-ray",
        "COS_PORT": "9000",
        "COS_WRITE_SIDE_HOST": "my-handler",
        "COS_WRITE_SIDE_PORT": "50051",
        "COS_WRITE_SIDE_USE_TLS": "false",
        "COS_WRITE_SIDE_PROTO_VALIDATION": "false",
        "COS_DB_HOST": "pg",
        "COS_DB_PORT": "5432",
        "COS_DB_NAME": "postgres",
        "COS_DB_USER": "postgres",
        "COS_DB_SCHEMA": "public",
        "COS_DB_SSL_MODE": "prefer",
        "COS_RAY_GCS_RECONNECT_TIMEOUT_SECONDS": "60",
        "RAY_gcs_rpc_server_reconnect_timeout_s": "60",
    }
    fields = {
        k: v["valueFrom"]["fieldRef"]["fieldPath"]
        for k, v in env.items()
        if "valueFrom" in v and "fieldRef" in v["valueFrom"]
    }
    assert fields == {
        "POD_IP": "status.podIP",
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }
    assert env["COS_DB_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "pg-cred", "key": "password"}
    }
    assert env_of(manifests, "head").keys() == env.keys()


def test_write_side_values_become_their_settings() -> None:
    env = env_of(
        render(
            "writeSide.useTls=true",
            "writeSide.tlsCaFile=/etc/ca/ca.pem",
            "writeSide.propagatedHeaders={x-user,x-tenant}",
            "writeSide.persistedHeaders={x-user}",
            "writeSide.protoValidation=true",
            "writeSide.eventProtos={bank.v1.Opened,bank.v1.Deposited}",
            "writeSide.stateProtos={bank.v1.Account}",
        ),
        "head",
    )
    assert {k: env[k]["value"] for k in env if k.startswith("COS_WRITE")} == {
        "COS_WRITE_SIDE_HOST": "my-handler",
        "COS_WRITE_SIDE_PORT": "50051",
        "COS_WRITE_SIDE_USE_TLS": "true",
        "COS_WRITE_SIDE_TLS_CA_FILE": "/etc/ca/ca.pem",
        "COS_WRITE_SIDE_PROPAGATED_HEADERS": "x-user,x-tenant",
        "COS_WRITE_PERSISTED_HEADERS": "x-user",
        "COS_WRITE_SIDE_PROTO_VALIDATION": "true",
        "COS_WRITE_SIDE_EVENT_PROTOS": "bank.v1.Opened,bank.v1.Deposited",
        "COS_WRITE_SIDE_STATE_PROTOS": "bank.v1.Account",
    }


def test_config_adds_settings_as_strings_and_extra_env_comes_last() -> None:
    values: Manifest = {
        "config": {
            "COS_NUM_SHARDS": 32,
            "COS_MAX_MESSAGE_BYTES": 8388608,
            "COS_COMMAND_HANDLER_TIMEOUT": 0.5,
            "COS_DISABLE_SNAPSHOT": True,
            "LOG_STYLE": "JSON",
        },
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
    }
    container = container_of(render(values=values), "worker")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["COS_NUM_SHARDS"] == "32"
    assert env["COS_MAX_MESSAGE_BYTES"] == "8388608"  # not 8.388608e+06
    assert env["COS_COMMAND_HANDLER_TIMEOUT"] == "0.5"
    assert env["COS_DISABLE_SNAPSHOT"] == "true"
    assert env["LOG_STYLE"] == "JSON"
    assert container["env"][-1] == {"name": "TZ", "value": "UTC"}


def test_config_may_not_set_what_the_chart_sets() -> None:
    error = render_error("config.COS_PORT=1")
    assert "config.COS_PORT: the chart sets COS_PORT itself; use service.port" in error


def test_the_rendered_environment_loads_into_the_runtime_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environ = environment_of(render("config.COS_NUM_SHARDS=32"), "worker", "from-the-api")
    environ["POD_IP"] = "10.1.2.3"
    isolate_environment(monkeypatch, environ)
    settings = load_settings()
    assert environment_warnings(settings, environ) == []
    assert settings.deployment.deployment_mode is DeploymentMode.KUBERNETES
    assert settings.deployment.kubernetes_app_label == "rel-cos-ray"
    assert settings.deployment.replica_count == 3
    assert (settings.handler.host, settings.handler.port) == ("my-handler", 50051)
    assert (settings.db.host, settings.db.port, settings.db.name) == ("pg", 5432, "postgres")
    assert settings.db.password.get_secret_value() == "from-the-api"
    assert settings.cluster.num_shards == 32
    assert settings.deployment.pod_ip == "10.1.2.3"


def test_probes_ask_cos_health() -> None:
    container = container_of(render("probes.liveness.periodSeconds=20"), "worker")
    assert container["startupProbe"] == {
        "exec": {"command": ["cos", "health", "--alive"]},
        "periodSeconds": 5,
        "timeoutSeconds": 5,
        "failureThreshold": 60,
    }
    assert container["readinessProbe"] == {
        "exec": {"command": ["cos", "health"]},
        "periodSeconds": 5,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    assert container["livenessProbe"] == {
        "exec": {"command": ["cos", "health", "--alive"]},
        "periodSeconds": 20,
        "timeoutSeconds": 5,
        "failureThreshold": 6,
    }


def test_pre_stop_pauses_before_sigterm() -> None:
    assert container_of(render(), "head")["lifecycle"] == {
        "preStop": {"exec": {"command": ["sleep", "5"]}}
    }
    container = container_of(render("preStopSeconds=9"), "worker")
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "9"]


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    manifests = render()
    assert pod_of(manifests, "worker")["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container_of(manifests, "head")["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_ray_writes_only_to_volumes() -> None:
    manifests = render("ray.shmSize=1Gi")
    volumes = {v["name"]: v for v in pod_of(manifests, "worker")["spec"]["volumes"]}
    assert volumes == {
        "shm": {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        "tmp": {"name": "tmp", "emptyDir": {}},
        "data": {"name": "data", "emptyDir": {}},
    }
    mounts = {m["mountPath"]: m["name"] for m in container_of(manifests, "worker")["volumeMounts"]}
    assert mounts == {"/dev/shm": "shm", "/tmp": "tmp", "/data": "data"}


def test_ports_image_and_resources() -> None:
    manifests = render("image.tag=7", "worker.resources.limits.memory=4Gi")
    head, worker = container_of(manifests, "head"), container_of(manifests, "worker")
    assert {p["name"]: p["containerPort"] for p in head["ports"]} == {"grpc": 9000, "ray-gcs": 6379}
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {"grpc": 9000}
    assert head["image"] == "localhost/cos-ray:7" and head["imagePullPolicy"] == "IfNotPresent"
    assert head["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert worker["resources"]["limits"] == {"memory": "4Gi"}
    default_tag = container_of(render(), "head")["image"]
    assert default_tag == "localhost/cos-ray:0.1.0"


def test_extra_env_volumes_and_mounts_land_in_the_pod() -> None:
    values: Manifest = {
        "extraEnv": [
            {"name": "COS_ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "a", "key": "t"}}}
        ],
        "extraVolumes": [{"name": "ca", "secret": {"secretName": "handler-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
        "podAnnotations": {"team": "payments"},
        "podLabels": {"tier": "backend"},
    }
    manifests = render(values=values)
    for role in ("head", "worker"):
        pod, container = pod_of(manifests, role), container_of(manifests, role)
        assert container["env"][-1] == values["extraEnv"][0]
        assert pod["spec"]["volumes"][-1] == values["extraVolumes"][0]
        assert container["volumeMounts"][-1] == values["extraVolumeMounts"][0]
        assert pod["metadata"]["annotations"]["team"] == "payments"
        assert pod["metadata"]["labels"]["tier"] == "backend"


def test_node_placement_is_per_role() -> None:
    manifests = render("head.nodeSelector.pool=head", "worker.tolerations[0].operator=Exists")
    head, worker = pod_of(manifests, "head")["spec"], pod_of(manifests, "worker")["spec"]
    assert head["nodeSelector"] == {"pool": "head"} and "tolerations" not in head
    assert worker["tolerations"] == [{"operator": "Exists"}] and "nodeSelector" not in worker


# --- the database password ----------------------------------------------------------------


def test_the_password_key_of_an_existing_secret_is_a_value() -> None:
    env = env_of(render("database.existingSecretKey=pw"), "head")
    assert env["COS_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg-cred", "key": "pw"}


def test_a_password_value_goes_into_a_secret_the_chart_makes() -> None:
    sets = ("writeSide.host=h", "writeSide.port=1", "database.host=pg", "database.password=s3")
    done = helm(*template_args(sets, ()))
    assert done.returncode == 0, done.stderr
    manifests = [m for m in yaml.safe_load_all(done.stdout) if m]
    secret = find(manifests, "Secret", "rel-cos-ray-database")
    assert base64.b64decode(secret["data"]["password"]) == b"s3"
    env = env_of(manifests, "worker")
    ref = {"name": "rel-cos-ray-database", "key": "password"}
    assert env["COS_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    annotations = pod_of(manifests, "worker")["metadata"]["annotations"]
    changed = helm(*template_args((*sets[:3], "database.password=other"), ()))
    assert annotations["checksum/database-secret"] not in changed.stdout


def test_the_operator_token_comes_from_a_secret() -> None:
    assert "COS_ADMIN_TOKEN" not in env_of(render(), "head")
    env = env_of(render("adminToken.existingSecret=cos-admin"), "worker")
    assert env["COS_ADMIN_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "cos-admin", "key": "token"}
    }
    error = render_error("adminToken.existingSecret=cos-admin", "config.COS_ADMIN_TOKEN=t")
    assert "config.COS_ADMIN_TOKEN: the chart sets COS_ADMIN_TOKEN itself" in error


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ((), "database: the password is missing: set database.existingSecret"),
        (
            ("database.existingSecret=pg-cred", "database.password=s3"),
            "database: give either database.existingSecret or database.password, not both",
        ),
    ],
)
def test_the_password_comes_one_way_exactly(sets: tuple[str, ...], message: str) -> None:
    example = ("writeSide.host=h", "writeSide.port=1", "database.host=pg")
    assert message in render_error(*sets, example=example)


# --- Ray's GCS fault tolerance ------------------------------------------------------------


def test_a_redis_address_makes_the_head_fault_tolerant() -> None:
    manifests = render(
        "ray.gcsFaultTolerance.redisAddress=redis:6379",
        "ray.gcsFaultTolerance.redisPasswordSecret.name=redis-cred",
        "ray.gcsFaultTolerance.reconnectTimeoutSeconds=300",
    )
    head, worker = env_of(manifests, "head"), env_of(manifests, "worker")
    assert head["RAY_REDIS_ADDRESS"]["value"] == "redis:6379"
    assert head["RAY_external_storage_namespace"]["value"] == "shop-rel-cos-ray"
    assert head["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-cred",
        "key": "password",
    }
    assert '--redis-password="$REDIS_PASSWORD"' in script_of(manifests, "head")
    assert not {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "RAY_external_storage_namespace"} & set(
        worker
    )
    for env in (head, worker):
        assert env["COS_RAY_GCS_RECONNECT_TIMEOUT_SECONDS"]["value"] == "300"
        assert env["RAY_gcs_rpc_server_reconnect_timeout_s"]["value"] == "300"


def test_without_redis_the_head_has_no_redis_settings() -> None:
    head = env_of(render(), "head")
    assert "RAY_REDIS_ADDRESS" not in head and "REDIS_PASSWORD" not in head


# --- read sides ---------------------------------------------------------------------------

EXPECTED_READ_SIDES = [
    ReadSideConfig(
        read_side_id="accounts-view",
        host="read-handler",
        port=50053,
        timeout_ms=5000,
        failure_policy=FailurePolicy.REPLAY_SKIP,
    ),
    ReadSideConfig(
        read_side_id="audit",
        host="audit-handler",
        port=50054,
        use_tls=True,
        auto_start=False,
        enabled=False,
    ),
]


def test_read_sides_render_files_the_runtime_parses() -> None:
    data = find(render(values=READ_SIDES), "ConfigMap", "rel-cos-ray-read-sides")["data"]
    assert sorted(data) == ["accounts-view.yaml", "audit.yaml"]
    parsed = [config for name in sorted(data) for config in from_yaml(data[name], name)]
    assert parsed == EXPECTED_READ_SIDES


def test_read_sides_are_mounted_and_enabled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manifests = render(values=READ_SIDES)
    for role in ("head", "worker"):
        volumes = {v["name"]: v for v in pod_of(manifests, role)["spec"]["volumes"]}
        assert volumes["read-sides"]["configMap"] == {"name": "rel-cos-ray-read-sides"}
        mounts = {m["name"]: m for m in container_of(manifests, role)["volumeMounts"]}
        assert mounts["read-sides"]["mountPath"] == "/etc/cos/read-sides"
    # The folder as Kubernetes mounts it, read through the runtime's settings.
    data = find(manifests, "ConfigMap", "rel-cos-ray-read-sides")["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    env = env_of(manifests, "worker")
    assert env["COS_READ_SIDE_ENABLED"]["value"] == "true"
    assert env["COS_READ_SIDE_CONFIG"]["value"] == "/etc/cos/read-sides"
    environ = environment_of(manifests, "worker", "x")
    environ.update(POD_IP="10.1.2.3", COS_READ_SIDE_CONFIG=str(tmp_path))
    isolate_environment(monkeypatch, environ)
    assert list(load_settings().read_side.read_sides) == EXPECTED_READ_SIDES


def test_changed_read_sides_roll_the_pods() -> None:
    before = pod_of(render(values=READ_SIDES), "worker")["metadata"]["annotations"]
    after = pod_of(render("readSides.audit.port=50055", values=READ_SIDES), "worker")
    assert before["checksum/read-sides"] != after["metadata"]["annotations"]["checksum/read-sides"]


def test_without_read_sides_there_is_no_config_map() -> None:
    manifests = render()
    assert [m["metadata"]["name"] for m in manifests if m["kind"] == "ConfigMap"] == [
        "rel-cos-ray-cluster"
    ]
    assert "COS_READ_SIDE_ENABLED" not in env_of(manifests, "worker")
