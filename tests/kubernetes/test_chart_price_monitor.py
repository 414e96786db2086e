"""The Helm chart's price monitor: a Deployment (HTTP API, probes, metrics) and Service connecting
as its own database role, whose generated password lives in a Secret (kept by upgrades) and is
set in PostgreSQL by a hook Job after the migrations; switchable off; values checked by the
schema; manifests accepted by kubeconform against the test API server's schemas.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kubernetes.cluster import Cluster
from tests.kubernetes.conftest import (
    CHART,
    RELEASE_NAMESPACE,
    Api,
    completing_hook_jobs,
    helm,
)
from tests.kubernetes.schemas import assert_kubeconform_accepts

pytestmark = pytest.mark.kubernetes

KUBE_VERSION = "1.36.3"
ROLE = "storefleet_price_monitor"


def render(cluster: Cluster, *sets: str) -> list[dict]:
    args = ["template", "storefleet", str(CHART), "--namespace", RELEASE_NAMESPACE,
            "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(helm(cluster, *args).stdout) if doc]


def monitor_objects(documents: list[dict]) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in documents
            if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
            in ("price-monitor", "price-monitor-role")}


def decoded(secret) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def env_of(container) -> dict:
    return {e.name: e for e in container.env}


def test_default_install_creates_the_price_monitor(api: Api, helm_release: str) -> None:
    from kubernetes import client

    ns = RELEASE_NAMESPACE
    deployment = api.apps.read_namespaced_deployment("storefleet-price-monitor", ns)
    pod = deployment.spec.template.spec
    assert deployment.spec.replicas == 1
    assert pod.automount_service_account_token is False and pod.enable_service_links is False
    assert pod.security_context.run_as_non_root is True
    [container] = pod.containers
    assert container.image == "storefleet/workloads:0.1.0"
    assert container.command == ["storefleet", "price-monitor"]
    assert container.security_context.read_only_root_filesystem is True
    assert [(p.name, p.container_port) for p in container.ports] == [("http", 8090)]
    assert (container.startup_probe.http_get.path, container.readiness_probe.http_get.path,
            container.liveness_probe.http_get.path) == ("/healthz", "/readyz", "/healthz")
    annotations = deployment.spec.template.metadata.annotations
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"],
            annotations["prometheus.io/path"]) == ("true", "8090", "/metrics")
    assert {"checksum/endpoints", "checksum/role"} <= set(annotations)

    env = env_of(container)
    assert env["STOREFLEET_PRICE_MONITOR_DB_USER"].value == ROLE
    password = env["STOREFLEET_PRICE_MONITOR_DB_PASSWORD"].value_from.secret_key_ref
    assert (password.name, password.key) == ("storefleet-price-monitor", "password")
    for name in ("STOREFLEET_PG_DSN", "STOREFLEET_REDIS_URL"):
        ref = env[name].value_from.secret_key_ref
        assert (ref.name, ref.key) == ("storefleet-endpoints", name)
    assert "STOREFLEET_KAFKA_BOOTSTRAP" not in env  # nothing it does not need

    secret = decoded(api.core.read_namespaced_secret("storefleet-price-monitor", ns))
    assert len(secret["password"]) == 32 and secret["password"].isalnum()

    service = api.core.read_namespaced_service("storefleet-price-monitor", ns)
    assert service.spec.selector == deployment.spec.selector.match_labels
    [port] = service.spec.ports
    assert (port.name, port.port, port.target_port) == ("http", 80, "http")

    job = client.BatchV1Api(api.client).read_namespaced_job("storefleet-price-monitor-role", ns)
    assert job.metadata.annotations["helm.sh/hook"] == "post-install,post-upgrade"
    # After the migrations Job (weight 0) that creates the role.
    assert job.metadata.annotations["helm.sh/hook-weight"] == "1"
    migrations = client.BatchV1Api(api.client).read_namespaced_job("storefleet-migrations", ns)
    assert int(migrations.metadata.annotations["helm.sh/hook-weight"]) < 1
    [runner] = job.spec.template.spec.containers
    assert runner.command == ["storefleet", "price-monitor", "set-role-password"]
    job_env = env_of(runner)
    assert job_env["STOREFLEET_PG_DSN"].value_from.secret_key_ref.name == "storefleet-endpoints"
    ref = job_env["STOREFLEET_PRICE_MONITOR_DB_PASSWORD"].value_from.secret_key_ref
    assert (ref.name, ref.key) == ("storefleet-price-monitor", "password")


@pytest.fixture
def release(cluster: Cluster, api: Api, namespace: str) -> Iterator[tuple[str, str]]:
    name = f"pm{uuid.uuid4().hex[:6]}"
    with completing_hook_jobs(api, namespace):
        helm(cluster, "install", name, str(CHART), "--namespace", namespace, "--timeout", "2m")
    yield name, namespace
    helm(cluster, "uninstall", name, "--namespace", namespace, "--timeout", "2m", check=False)


def test_upgrade_keeps_the_role_password(cluster: Cluster, api: Api,
                                         release: tuple[str, str]) -> None:
    name, ns = release
    secret = f"{name}-storefleet-price-monitor"
    before = decoded(api.core.read_namespaced_secret(secret, ns))
    checksum = api.apps.read_namespaced_deployment(
        secret, ns).spec.template.metadata.annotations["checksum/role"]
    with completing_hook_jobs(api, ns):
        helm(cluster, "upgrade", name, str(CHART), "--namespace", ns, "--timeout", "2m",
             "--set", "priceMonitor.replicas=2")
    assert decoded(api.core.read_namespaced_secret(secret, ns)) == before
    deployment = api.apps.read_namespaced_deployment(secret, ns)
    assert deployment.spec.replicas == 2
    assert deployment.spec.template.metadata.annotations["checksum/role"] == checksum


def test_rendered_objects_pass_kubeconform(cluster: Cluster, tmp_path: Path) -> None:
    objects = monitor_objects(render(cluster))
    assert set(objects) == {"Deployment", "Service", "Secret", "Job"}
    assert_kubeconform_accepts(cluster, list(objects.values()), tmp_path)


def test_disabled_price_monitor_renders_no_objects(cluster: Cluster) -> None:
    assert monitor_objects(render(cluster, "priceMonitor.enabled=false")) == {}


def test_values_set_port_service_interval_and_an_existing_secret(cluster: Cluster) -> None:
    objects = monitor_objects(render(
        cluster, "priceMonitor.port=9100", "priceMonitor.service.type=NodePort",
        "priceMonitor.watchIntervalSeconds=30", "priceMonitor.auth.existingSecret=pm-role",
        "priceMonitor.auth.existingSecretPasswordKey=pw",
        "priceMonitor.extraEnv.STOREFLEET_PRICE_MONITOR_POOL_SIZE=8"))
    assert "Secret" not in objects  # the user's Secret is used as is
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 9100}]
    env = {e["name"]: e for e in container["env"]}
    assert env["STOREFLEET_PRICE_MONITOR_PORT"]["value"] == "9100"
    assert env["STOREFLEET_PRICE_MONITOR_WATCH_INTERVAL_SECONDS"]["value"] == "30"
    assert env["STOREFLEET_PRICE_MONITOR_POOL_SIZE"]["value"] == "8"
    for where in (container, objects["Job"]["spec"]["template"]["spec"]["containers"][0]):
        ref = {e["name"]: e for e in where["env"]}["STOREFLEET_PRICE_MONITOR_DB_PASSWORD"]
        assert ref["valueFrom"]["secretKeyRef"] == {"name": "pm-role", "key": "pw"}
    assert objects["Service"]["spec"]["type"] == "NodePort"


@pytest.mark.parametrize(("value", "expected"), [
    ("priceMonitor.port=0", "at '/priceMonitor/port': minimum: got 0, want 1"),
    ("priceMonitor.enabled=yes", "at '/priceMonitor/enabled': got string, want boolean"),
    ("priceMonitor.watchIntervalSeconds=0", "at '/priceMonitor/watchIntervalSeconds'"),
    ("priceMonitor.service.type=Ingress", "at '/priceMonitor/service/type'"),
    ("priceMonitor.colour=red", "at '/priceMonitor': additional properties 'colour'"),
    # The role's credentials come only from its Secret, never as a plain value.
    ("priceMonitor.extraEnv.STOREFLEET_PRICE_MONITOR_DB_PASSWORD=pw",
     "at '/priceMonitor/extraEnv/STOREFLEET_PRICE_MONITOR_DB_PASSWORD': false schema"),
    ("priceMonitor.extraEnv.STOREFLEET_PG_DSN=postgresql://x",
     "at '/priceMonitor/extraEnv': additional properties 'STOREFLEET_PG_DSN'"),
])
def test_values_schema_refuses_bad_price_monitor_values(cluster: Cluster, value: str,
                                                        expected: str) -> None:
    result = helm(cluster, "template", "storefleet", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert expected in result.stderr
