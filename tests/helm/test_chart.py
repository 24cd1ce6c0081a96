"""The chart's objects, offline: `helm lint`, what `helm template` makes for the example and
for each Kubernetes version, `kubernetes-validate --strict`, and the values it refuses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.chart import (
    BIN,
    CHART,
    EXAMPLE,
    READ_SIDES,
    Manifest,
    container_of,
    env_of,
    find,
    helm,
    pod_of,
    render,
    render_error,
    template_args,
)

# --- lint and the objects ---------------------------------------------------------------


def test_lint_is_clean_with_the_required_values() -> None:
    sets = [arg for value in EXAMPLE for arg in ("--set", value)]
    done = helm("lint", str(CHART), "--strict", *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ERROR]" not in done.stdout and "[WARNING]" not in done.stdout, done.stdout


def test_lint_fails_without_the_required_values() -> None:
    done = helm("lint", str(CHART))
    assert done.returncode != 0
    for value in ("writeSide.host", "writeSide.port", "database.host"):
        assert value in done.stdout


def test_the_example_renders_the_chart_objects() -> None:
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in render())
    assert kinds == [
        ("ConfigMap", "rel-cos-ray-cluster"),
        ("PodDisruptionBudget", "rel-cos-ray"),
        ("Role", "rel-cos-ray"),
        ("RoleBinding", "rel-cos-ray"),
        ("Service", "rel-cos-ray"),
        ("Service", "rel-cos-ray-ray"),
        ("ServiceAccount", "rel-cos-ray"),
        ("StatefulSet", "rel-cos-ray-head"),
        ("StatefulSet", "rel-cos-ray-worker"),
    ]


@pytest.mark.parametrize(("role", "replicas"), [("head", 1), ("worker", 2)])
def test_statefulsets_start_pods_in_parallel_under_the_headless_service(
    role: str, replicas: int
) -> None:
    manifests = render()
    spec = find(manifests, "StatefulSet", f"rel-cos-ray-{role}")["spec"]
    assert spec["replicas"] == replicas
    assert spec["serviceName"] == "rel-cos-ray-ray"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "rel-cos-ray"
    assert labels["app.kubernetes.io/component"] == role
    assert labels["app.kubernetes.io/name"] == "cos-ray"
    assert labels["app.kubernetes.io/instance"] == "rel"
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["spec"]["serviceAccountName"] == "rel-cos-ray"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60
    assert "checksum/read-sides" in pod["metadata"]["annotations"]


def replica_count(manifests: list[Manifest], role: str) -> str:
    """COS_REPLICA_COUNT as the role's pods read it: from the cluster ConfigMap."""
    ref = env_of(manifests, role)["COS_REPLICA_COUNT"]["valueFrom"]["configMapKeyRef"]
    value: str = find(manifests, "ConfigMap", ref["name"])["data"][ref["key"]]
    return value


def test_replica_count_counts_the_head_and_the_workers() -> None:
    manifests = render("replicas=4")
    assert find(manifests, "StatefulSet", "rel-cos-ray-worker")["spec"]["replicas"] == 4
    assert find(manifests, "StatefulSet", "rel-cos-ray-head")["spec"]["replicas"] == 1
    for role in ("head", "worker"):
        assert replica_count(manifests, role) == "5"


def test_scaling_does_not_change_the_pod_template() -> None:
    def templates(replicas: str) -> list[object]:
        manifests = render(f"replicas={replicas}")
        return [find(manifests, "StatefulSet", f"rel-cos-ray-{r}")["spec"]["template"]
                for r in ("head", "worker")]  # fmt: skip

    assert templates("2") == templates("5")


def test_zero_workers_leave_the_head_alone() -> None:
    manifests = render("replicas=0")
    assert find(manifests, "StatefulSet", "rel-cos-ray-worker")["spec"]["replicas"] == 0
    assert replica_count(manifests, "head") == "1"


def test_the_role_reads_pods_and_nothing_else() -> None:
    manifests = render()
    rules = find(manifests, "Role", "rel-cos-ray")["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = find(manifests, "RoleBinding", "rel-cos-ray")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "rel-cos-ray",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-cos-ray", "namespace": "shop"}
    ]


def test_without_a_created_service_account_the_pods_use_the_named_one() -> None:
    manifests = render("serviceAccount.create=false", "serviceAccount.name=ops")
    assert not [m for m in manifests if m["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    assert pod_of(manifests, "worker")["spec"]["serviceAccountName"] == "ops"


def test_the_client_service_selects_every_pod_by_the_app_label() -> None:
    manifests = render("appLabel=orders", "service.annotations.team=payments")
    service = find(manifests, "Service", "rel-cos-ray")
    assert service["metadata"]["annotations"] == {"team": "payments"}
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app": "orders"}
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 9000, "targetPort": "grpc", "protocol": "TCP"}
    ]
    for role in ("head", "worker"):
        assert pod_of(manifests, role)["metadata"]["labels"]["app"] == "orders"
        assert env_of(manifests, role)["COS_KUBERNETES_APP_LABEL"]["value"] == "orders"


def test_http_and_metrics_ports_are_off_until_set_then_served_and_published() -> None:
    plain = render()
    assert "COS_HTTP_PORT" not in env_of(plain, "head")
    assert "COS_METRICS_PORT" not in env_of(plain, "worker")
    manifests = render("service.httpPort=9001", "service.metricsPort=9464")
    assert published(manifests, "http") == 9001
    for role in ("head", "worker"):
        ports = container_ports(manifests, role)
        assert (ports["http"], ports["metrics"]) == (9001, 9464)
        env = env_of(manifests, role)
        assert (env["COS_HTTP_ENABLED"]["value"], env["COS_HTTP_PORT"]["value"]) == ("true", "9001")
        assert env["COS_METRICS_PORT"]["value"] == "9464"
        annotations = pod_of(manifests, role)["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == "9464"
        assert annotations["prometheus.io/scrape"] == "true"
    assert "service.httpPort" in render_error("config.COS_HTTP_PORT=9001")


def test_the_subscription_port_is_served_and_turns_subscriptions_on() -> None:
    assert "COS_SUBSCRIPTION_PORT" not in env_of(render(), "head")
    manifests = render("service.subscriptionPort=9002")
    assert published(manifests, "subscriptions") == 9002
    for role in ("head", "worker"):
        assert container_ports(manifests, role)["subscriptions"] == 9002
        env = env_of(manifests, role)
        assert env["COS_SUBSCRIPTION_PORT"]["value"] == "9002"
        assert env["COS_SUBSCRIPTION_ENABLED"]["value"] == "true"
    # Said once when config says it too (env_of refuses a duplicate; the runtime refuses a
    # port with "false").
    both = render("service.subscriptionPort=9002", "config.COS_SUBSCRIPTION_ENABLED=true")
    assert env_of(both, "head")["COS_SUBSCRIPTION_ENABLED"]["value"] == "true"
    assert "service.subscriptionPort" in render_error("config.COS_SUBSCRIPTION_PORT=9002")


def published(manifests: list[Manifest], name: str) -> int:
    """The client Service's port named ``name``, checked to lead to the pods' port of
    that name."""
    ports = find(manifests, "Service", "rel-cos-ray")["spec"]["ports"]
    (port,) = [p for p in ports if p["name"] == name]
    assert (port["targetPort"], port["protocol"]) == (name, "TCP")
    return int(port["port"])


def container_ports(manifests: list[Manifest], role: str) -> dict[str, int]:
    """name -> containerPort of the ``role`` pods' container."""
    return {p["name"]: p["containerPort"] for p in container_of(manifests, role)["ports"]}


def test_the_headless_service_publishes_pods_before_they_are_ready() -> None:
    spec = find(render(), "Service", "rel-cos-ray-ray")["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert spec["selector"] == {
        "app.kubernetes.io/name": "cos-ray",
        "app.kubernetes.io/instance": "rel",
    }
    assert {(p["name"], p["port"]) for p in spec["ports"]} == {("gcs", 6379), ("grpc", 9000)}


def test_names_follow_the_release_and_the_overrides() -> None:
    done = helm("template", "cos-ray-prod", str(CHART), *[f"--set={v}" for v in EXAMPLE])
    assert done.returncode == 0, done.stderr
    names = {m["metadata"]["name"] for m in yaml.safe_load_all(done.stdout) if m}
    assert "cos-ray-prod-head" in names and "cos-ray-prod-ray" in names
    overridden = render("fullnameOverride=orders")
    assert find(overridden, "StatefulSet", "orders-worker")["spec"]["serviceName"] == "orders-ray"


# --- Kubernetes versions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "api_version"),
    [
        (("--kube-version", "1.20.2"), "policy/v1beta1"),
        (("--kube-version", "1.25.0"), "policy/v1"),
        (
            ("--kube-version", "1.20.2", "--api-versions", "policy/v1/PodDisruptionBudget"),
            "policy/v1",
        ),
    ],
)
def test_the_disruption_budget_follows_the_cluster(
    extra: tuple[str, ...], api_version: str
) -> None:
    budget = find(render(extra=extra), "PodDisruptionBudget", "rel-cos-ray")
    assert budget["apiVersion"] == api_version
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "cos-ray",
                "app.kubernetes.io/instance": "rel",
            }
        },
    }


def test_the_disruption_budget_can_be_left_out() -> None:
    manifests = render("podDisruptionBudget.enabled=false")
    assert not [m for m in manifests if m["kind"] == "PodDisruptionBudget"]


def test_kubernetes_older_than_1_20_is_refused() -> None:
    done = helm(*template_args(EXAMPLE, ("--kube-version", "1.19.0")))
    assert done.returncode != 0 and "kubeVersion" in done.stderr


@pytest.mark.parametrize(
    ("values", "objects"),
    [
        ({}, 9),
        (
            {
                **READ_SIDES,
                "database": {"password": "s3"},
                "ray": {
                    "gcsFaultTolerance": {
                        "redisAddress": "redis:6379",
                        "redisPasswordSecret": {"name": "r"},
                    }
                },
                "extraEnv": [{"name": "TZ", "value": "UTC"}],
                "extraVolumes": [{"name": "ca", "secret": {"secretName": "handler-ca"}}],
                "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}],
                "head": {"tolerations": [{"operator": "Exists"}], "nodeSelector": {"pool": "a"}},
                "service": {
                    "type": "LoadBalancer",
                    "annotations": {"a": "b"},
                    "httpPort": 9001,
                    "subscriptionPort": 9002,
                    "metricsPort": 9464,
                },
            },
            11,  # with the read sides' ConfigMap and the Secret
        ),
    ],
    ids=["defaults", "everything"],
)
def test_every_object_is_valid_kubernetes(values: Manifest, objects: int, tmp_path: Path) -> None:
    required = ("writeSide.host=my-handler", "writeSide.port=50051", "database.host=pg")
    values = {"database": {"existingSecret": "pg-cred"}, **values}
    manifests = render(example=required, values=values, extra=("--kube-version", "1.25.0"))
    assert len(manifests) == objects
    files = []
    for index, manifest in enumerate(manifests):
        path = tmp_path / f"{index}-{manifest['kind']}.yaml"
        path.write_text(yaml.safe_dump(manifest))
        files.append(str(path))
    done = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--kubernetes-version", "1.25.0", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(files), done.stdout


# --- values that must be refused ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("replicas=abc",), "replicas: Invalid type. Expected: integer, given: string"),
        (("writeSide.port=notaport",), "writeSide.port: Invalid type. Expected: integer"),
        (("writeSide.port=70000",), "writeSide.port: Must be less than or equal to 65535"),
        (("replica=3",), "Additional property replica is not allowed"),
        (("writeSide.hots=x",), "writeSide: Additional property hots is not allowed"),
        (("writeSide.host=",), "writeSide.host: String length must be greater than or equal to 1"),
        (("writeSide.host=null",), "writeSide: host is required"),
        (("database.host=",), "database.host: String length must be greater than or equal to 1"),
        (("readSides.a.host=h",), "readSides.a: port is required"),
        (
            ("readSides.a.host=h", "readSides.a.port=1", "readSides.a.failurePolicy=RETRY"),
            "readSides.a.failurePolicy: readSides.a.failurePolicy must be one of",
        ),
        (("config.NUM_SHARDS=3",), "config"),
        (("image.pullPolicy=Sometimes",), "image.pullPolicy"),
        (("service.httpPort=0",), "service.httpPort: Must be greater than or equal to 1"),
        (("ray.gcsFaultTolerance.redisAddress=redis",), "ray.gcsFaultTolerance.redisAddress"),
    ],
)
def test_wrong_values_fail_naming_the_value(sets: tuple[str, ...], message: str) -> None:
    assert message in render_error(*sets)


def test_an_unquoted_decimal_image_tag_fails_instead_of_losing_its_zero() -> None:
    done = helm(*template_args(EXAMPLE, ("--values", "-")), stdin="image:\n  tag: 1.10\n")
    assert done.returncode != 0
    assert "image.tag: Invalid type. Expected: [string,integer], given: number" in done.stderr


def test_a_missing_write_handler_host_fails_naming_it() -> None:
    error = render_error(
        example=("writeSide.port=50051", "database.host=pg", "database.existingSecret=s")
    )
    assert "writeSide.host: String length must be greater than or equal to 1" in error
