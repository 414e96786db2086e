"""The Helm chart's platform part: ingest webhook, persister, migrations Job, bundled Kafka,
PostgreSQL and Redis (each switchable to an external endpoint) and the Secrets tying them
together, rendered for every ci/<scenario>-values.yaml and installed into a real API server.

There is no kubelet: pods stay Pending, so the tests check what the API server holds; a helper
plays the Job controller for the chart's hook Job, which helm waits for.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.cluster import Cluster
from tests.kubernetes.conftest import (
    CHART,
    RELEASE_NAMESPACE,
    Api,
    completing_hook_jobs,
    get_or_none,
    helm,
)
from tests.kubernetes.schemas import assert_kubeconform_accepts

pytestmark = pytest.mark.kubernetes

KUBE_VERSION = "1.36.3"
SCENARIOS = sorted(CHART.glob("ci/*-values.yaml"))
# No ingest token: fleet pods get their own fleet's token (tests/kubernetes/test_operator.py).
ENDPOINT_KEYS = {"STOREFLEET_PG_DSN", "STOREFLEET_REDIS_URL", "STOREFLEET_KAFKA_BOOTSTRAP",
                 "STOREFLEET_INGEST_URL"}
# Secrets the external-services scenario names; created before installing it.
EXTERNAL_SECRETS = {"managed-postgresql": {"password": "p@ss word/1"},
                    "managed-redis": {"password": "r3dis"},
                    "ingest-token": {"token": "external-token"}}
EXTERNAL = CHART / "ci" / "external-services-values.yaml"


def render(cluster: Cluster, values_file: Path | None = None, *sets: str) -> list[dict]:
    args = ["template", "storefleet", str(CHART), "--namespace", RELEASE_NAMESPACE,
            "--kube-version", KUBE_VERSION]
    if values_file is not None:
        args += ["--values", str(values_file)]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(helm(cluster, *args).stdout) if doc]


def pod_templates(documents: list[dict]) -> Iterator[tuple[str, dict]]:
    for doc in documents:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def decoded(secret: Any) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def scenario_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_scenario_renders_manifests_kubeconform_accepts(cluster: Cluster, tmp_path: Path,
                                                        scenario: Path) -> None:
    assert_kubeconform_accepts(cluster, render(cluster, scenario), tmp_path)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_pods_are_non_root_with_resources_and_no_plain_credentials(cluster: Cluster,
                                                                    scenario: Path) -> None:
    templates = dict(pod_templates(render(cluster, scenario)))
    assert templates
    for where, pod in templates.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["enableServiceLinks"] is False, where
        for container in pod["containers"]:
            assert container["resources"].get("requests"), where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            for env in container.get("env", []):
                secret_like = any(word in env["name"] for word in
                                  ("PASSWORD", "TOKEN", "DSN", "REDIS_URL"))
                if secret_like:
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (where, env)


def test_default_install_creates_the_platform(api: Api, helm_release: str) -> None:
    from kubernetes import client

    ns = RELEASE_NAMESPACE
    webhook = api.apps.read_namespaced_deployment("storefleet-webhook", ns)
    pod = webhook.spec.template.spec
    container = pod.containers[0]
    assert container.command == ["storefleet", "webhook"]
    assert container.readiness_probe.http_get.path == "/readyz"
    assert container.liveness_probe.http_get.path == "/healthz"
    assert webhook.spec.template.metadata.annotations["prometheus.io/scrape"] == "true"
    assert pod.security_context.run_as_non_root is True
    token_ref = next(e for e in container.env if e.name == "STOREFLEET_INGEST_TOKEN")
    assert token_ref.value_from.secret_key_ref.name == "storefleet-webhook"

    service = api.core.read_namespaced_service("storefleet-webhook", ns)
    assert service.spec.selector == webhook.spec.selector.match_labels
    hpa = client.AutoscalingV2Api(api.client).read_namespaced_horizontal_pod_autoscaler(
        "storefleet-webhook", ns)
    assert hpa.spec.scale_target_ref.name == "storefleet-webhook"
    assert hpa.spec.metrics[0].resource.name == "cpu"
    pdb = client.PolicyV1Api(api.client).read_namespaced_pod_disruption_budget(
        "storefleet-webhook", ns)
    assert pdb.spec.selector.match_labels == webhook.spec.selector.match_labels

    persister = api.apps.read_namespaced_deployment("storefleet-persister", ns)
    assert persister.spec.template.spec.containers[0].command == ["storefleet", "persister"]

    for name in ("storefleet-kafka", "storefleet-postgresql", "storefleet-redis"):
        sts = api.apps.read_namespaced_stateful_set(name, ns)
        assert sts.spec.volume_claim_templates[0].spec.resources.requests["storage"]
        assert sts.spec.template.spec.enable_service_links is False
        assert api.core.read_namespaced_service(name, ns).spec.ports
    kafka = api.apps.read_namespaced_stateful_set("storefleet-kafka", ns)
    assert kafka.spec.template.spec.containers[0].image.startswith("apache/kafka:")

    job = client.BatchV1Api(api.client).read_namespaced_job("storefleet-migrations", ns)
    assert job.spec.template.spec.containers[0].command == ["storefleet", "db", "migrate"]

    endpoints = decoded(api.core.read_namespaced_secret("storefleet-endpoints", ns))
    assert set(endpoints) == ENDPOINT_KEYS
    pg_password = decoded(api.core.read_namespaced_secret("storefleet-postgresql", ns))["password"]
    redis_password = decoded(api.core.read_namespaced_secret("storefleet-redis", ns))["password"]
    token = decoded(api.core.read_namespaced_secret("storefleet-webhook", ns))["token"]
    assert len(pg_password) == len(redis_password) == len(token) == 32
    assert endpoints["STOREFLEET_PG_DSN"] == (
        f"postgresql://storefleet:{pg_password}@storefleet-postgresql.{ns}.svc:5432/storefleet")
    assert endpoints["STOREFLEET_REDIS_URL"] == (
        f"redis://:{redis_password}@storefleet-redis.{ns}.svc:6379/0")
    assert endpoints["STOREFLEET_KAFKA_BOOTSTRAP"] == f"storefleet-kafka.{ns}.svc:9092"
    assert endpoints["STOREFLEET_INGEST_URL"] == f"http://storefleet-webhook.{ns}.svc:80"
    key_ref = next(e for e in container.env if e.name == "STOREFLEET_INGEST_TOKEN_KEY")
    assert key_ref.value_from.secret_key_ref.name == "storefleet-ingest-token-key"
    key = decoded(api.core.read_namespaced_secret("storefleet-ingest-token-key", ns))["key"]
    assert len(key) == 32 and key != token


@pytest.fixture
def release(cluster: Cluster, api: Api, namespace: str) -> Iterator[tuple[str, str]]:
    """A fresh release of the chart's defaults in its own namespace; uninstalled afterwards."""
    name = f"sf{uuid.uuid4().hex[:6]}"
    with completing_hook_jobs(api, namespace):
        helm(cluster, "install", name, str(CHART), "--namespace", namespace, "--timeout", "2m")
    yield name, namespace
    helm(cluster, "uninstall", name, "--namespace", namespace, "--timeout", "2m", check=False)


def upgrade(cluster: Cluster, api: Api, release: tuple[str, str], *args: str) -> str:
    name, namespace = release
    with completing_hook_jobs(api, namespace):
        return helm(cluster, "upgrade", name, str(CHART), "--namespace", namespace,
                    "--timeout", "2m", *args).stdout


def test_upgrade_keeps_generated_credentials(cluster: Cluster, api: Api,
                                             release: tuple[str, str]) -> None:
    name, ns = release
    full = f"{name}-storefleet"
    names = [f"{full}-postgresql", f"{full}-redis", f"{full}-webhook", f"{full}-endpoints",
             f"{full}-ingest-token-key"]
    before = {secret: decoded(api.core.read_namespaced_secret(secret, ns)) for secret in names}
    checksum = api.apps.read_namespaced_deployment(
        f"{full}-webhook", ns).spec.template.metadata.annotations["checksum/endpoints"]
    upgrade(cluster, api, release)
    upgrade(cluster, api, release, "--set", "webhook.replicas=3")
    after = {secret: decoded(api.core.read_namespaced_secret(secret, ns)) for secret in names}
    assert after == before
    webhook = api.apps.read_namespaced_deployment(f"{full}-webhook", ns)
    assert webhook.spec.template.metadata.annotations["checksum/endpoints"] == checksum


def test_switching_bundled_services_off_uses_external_endpoints(
        cluster: Cluster, api: Api, release: tuple[str, str]) -> None:
    from kubernetes import client

    name, ns = release
    full = f"{name}-storefleet"
    for secret, data in EXTERNAL_SECRETS.items():
        api.core.create_namespaced_secret(ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name=secret), string_data=data))
    notes = upgrade(cluster, api, release, "--values", str(EXTERNAL))
    assert "WARNING" not in notes

    for component in ("kafka", "postgresql", "redis"):
        assert get_or_none(api.apps.read_namespaced_stateful_set, f"{full}-{component}",
                           ns) is None, component
        assert get_or_none(api.core.read_namespaced_service, f"{full}-{component}",
                           ns) is None, component
    assert get_or_none(api.core.read_namespaced_secret, f"{full}-postgresql", ns) is None
    assert get_or_none(api.core.read_namespaced_secret, f"{full}-redis", ns) is None
    assert get_or_none(api.core.read_namespaced_secret, f"{full}-webhook", ns) is None

    endpoints = decoded(api.core.read_namespaced_secret(f"{full}-endpoints", ns))
    assert endpoints == {
        "STOREFLEET_PG_DSN": "postgresql://storefleet_app:p%40ss%20word%2F1@pg.example.internal"
                             ":5432/storefleet?sslmode=require",
        "STOREFLEET_REDIS_URL": "rediss://:r3dis@redis.example.internal:6380/0",
        "STOREFLEET_KAFKA_BOOTSTRAP": "b-1.kafka.example.internal:9092,"
                                      "b-2.kafka.example.internal:9092",
        "STOREFLEET_INGEST_URL": f"http://{full}-webhook.{ns}.svc:80",
    }
    webhook = api.apps.read_namespaced_deployment(f"{full}-webhook", ns)
    token_ref = next(e for e in webhook.spec.template.spec.containers[0].env
                     if e.name == "STOREFLEET_INGEST_TOKEN").value_from.secret_key_ref
    assert (token_ref.name, token_ref.key) == ("ingest-token", "token")
    assert api.apps.read_namespaced_deployment(f"{full}-persister", ns)

    # Back to the bundled services: their objects return, with the endpoints pointing at them.
    upgrade(cluster, api, release, "--reset-values")
    assert api.apps.read_namespaced_stateful_set(f"{full}-kafka", ns)
    endpoints = decoded(api.core.read_namespaced_secret(f"{full}-endpoints", ns))
    assert endpoints["STOREFLEET_KAFKA_BOOTSTRAP"] == f"{full}-kafka.{ns}.svc:9092"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_helm_install_of_each_scenario(cluster: Cluster, api: Api, namespace: str,
                                       scenario: Path) -> None:
    from kubernetes import client

    values = yaml.safe_load(scenario.read_text()) or {}
    for secret, data in EXTERNAL_SECRETS.items():
        api.core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name=secret), string_data=data))
    fleet_namespaces = {*((values.get("operator") or {}).get("watchNamespaces") or []),
                        *((values.get("spark") or {}).get("serviceAccount") or {}).get(
                            "namespaces", [])}
    for extra in fleet_namespaces:
        if get_or_none(api.core.read_namespace, extra) is None:
            api.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
                name=extra)))
    name = f"sf{uuid.uuid4().hex[:6]}"
    try:
        with completing_hook_jobs(api, namespace):
            helm(cluster, "install", name, str(CHART), "--namespace", namespace,
                 "--values", str(scenario), "--timeout", "2m")
        full = f"{name}-storefleet"
        endpoints_name = values.get("endpointsSecret") or f"{full}-endpoints"
        endpoints = decoded(api.core.read_namespaced_secret(endpoints_name, namespace))
        assert set(endpoints) == ENDPOINT_KEYS
        assert all(endpoints.values()), endpoints
        for extra in fleet_namespaces:  # fleet pods there read it as envFrom
            assert decoded(api.core.read_namespaced_secret(endpoints_name, extra)) == endpoints
        assert api.apps.read_namespaced_deployment(f"{full}-webhook", namespace)
        assert api.apps.read_namespaced_deployment(f"{full}-persister", namespace)
        statefulsets = {s.metadata.name for s in
                        api.apps.list_namespaced_stateful_set(namespace).items}
        expected = {f"{full}-{c}" for c in ("kafka", "postgresql", "redis")
                    if (values.get(c) or {}).get("enabled", True)}
        assert statefulsets == expected
    finally:
        helm(cluster, "uninstall", name, "--namespace", namespace, "--timeout", "2m",
             check=False)


@pytest.mark.parametrize(("value", "expected"), [
    ("kafka.enabled=false", "at '/kafka/external/bootstrap': minLength"),
    ("postgresql.enabled=false", "at '/postgresql/external/host': minLength"),
    ("webhook.autoscaling.targetCPUUtilizationPercentage=0",
     "at '/webhook/autoscaling/targetCPUUtilizationPercentage': minimum: got 0, want 1"),
    ("postgresql.persistence.size=lots", "at '/postgresql/persistence/size': 'lots' does not"),
    ("webhook.extraEnv.lower=1", "at '/webhook/extraEnv': additional properties 'lower'"),
    ("monitoring.enabled=true", "additional properties 'monitoring' not allowed"),
    ("redis.external.database=99", "at '/redis/external/database': maximum: got 99, want 15"),
    ("webhook.service.type=Ingress", "at '/webhook/service/type': value must be one of"),
])
def test_values_schema_refuses_bad_platform_values(cluster: Cluster, value: str,
                                                    expected: str) -> None:
    result = helm(cluster, "template", "storefleet", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert expected in result.stderr


@pytest.mark.parametrize(("value", "expected"), [
    ("webhook.autoscaling.minReplicas=20", "minReplicas (20) is above maxReplicas (10)"),
    ("webhook.enabled=false", "webhook.externalUrl is required when webhook.enabled is false"),
])
def test_inconsistent_values_fail_with_a_message(cluster: Cluster, value: str,
                                                 expected: str) -> None:
    result = helm(cluster, "template", "storefleet", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert expected in result.stderr



def test_missing_external_secret_is_reported(cluster: Cluster, api: Api, namespace: str) -> None:
    name = f"sf{uuid.uuid4().hex[:6]}"
    try:
        with completing_hook_jobs(api, namespace):
            notes = helm(cluster, "install", name, str(CHART), "--namespace", namespace,
                         "--values", str(EXTERNAL), "--timeout", "2m").stdout
        assert "WARNING: Secret managed-postgresql was not found" in notes
        assert "WARNING: Secret ingest-token was not found" in notes
        assert f"Ingest:     http://{name}-storefleet-webhook.{namespace}.svc:80/v1/events" in notes
    finally:
        helm(cluster, "uninstall", name, "--namespace", namespace, "--timeout", "2m",
             check=False)
