"""The Helm chart's dashboard: a Deployment and Service reading Redis and PostgreSQL from the
endpoints Secret, switchable off, with its values checked by the schema.

Kubeconform and the non-root/credential checks of every ci/ scenario (which include the
dashboard) are in test_chart_platform.py.
"""

from __future__ import annotations

import pytest
import yaml

from tests.kubernetes.cluster import Cluster
from tests.kubernetes.conftest import CHART, RELEASE_NAMESPACE, Api, helm

pytestmark = pytest.mark.kubernetes

KUBE_VERSION = "1.36.3"


def render(cluster: Cluster, *sets: str) -> list[dict]:
    args = ["template", "storefleet", str(CHART), "--namespace", RELEASE_NAMESPACE,
            "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(helm(cluster, *args).stdout) if doc]


def dashboard_objects(documents: list[dict]) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in documents
            if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
            == "dashboard"}


def test_default_install_creates_the_dashboard(cluster: Cluster, api: Api,
                                               helm_release: str) -> None:
    ns = RELEASE_NAMESPACE
    deployment = api.apps.read_namespaced_deployment("storefleet-dashboard", ns)
    pod = deployment.spec.template.spec
    assert deployment.spec.replicas == 1
    assert pod.automount_service_account_token is False
    assert pod.enable_service_links is False
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    [container] = pod.containers
    assert container.image == "storefleet/dashboard:0.1.0"
    assert container.command == ["storefleet", "dashboard", "--host", "0.0.0.0", "--port",
                                 "8080"]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.resources.requests["cpu"]
    for probe in (container.startup_probe, container.readiness_probe, container.liveness_probe):
        assert (probe.http_get.path, probe.http_get.port) == ("/liveness", "http")
    assert [(p.name, p.container_port) for p in container.ports] == [("http", 8080)]

    env = {e.name: e for e in container.env}
    assert set(env) == {"STOREFLEET_REDIS_URL", "STOREFLEET_PG_DSN"}
    for name, entry in env.items():
        assert entry.value is None, name
        ref = entry.value_from.secret_key_ref
        assert (ref.name, ref.key) == ("storefleet-endpoints", name)
    assert "checksum/endpoints" in deployment.spec.template.metadata.annotations

    service = api.core.read_namespaced_service("storefleet-dashboard", ns)
    assert service.spec.type == "ClusterIP"
    assert service.spec.selector == deployment.spec.selector.match_labels
    assert service.spec.session_affinity == "ClientIP"
    [port] = service.spec.ports
    assert (port.name, port.port, port.target_port) == ("http", 80, "http")

    notes = helm(cluster, "get", "notes", helm_release, "--namespace", ns).stdout
    assert f"kubectl -n {ns} port-forward service/storefleet-dashboard 8080:80" in notes


def test_disabled_dashboard_renders_no_objects(cluster: Cluster) -> None:
    assert set(dashboard_objects(render(cluster))) == {"Deployment", "Service"}
    assert dashboard_objects(render(cluster, "dashboard.enabled=false")) == {}


def test_values_set_port_origins_service_and_image(cluster: Cluster) -> None:
    objects = dashboard_objects(render(
        cluster, "dashboard.port=9000", "dashboard.allowOrigins={dash.example.com,*.shop.io:443}",
        "dashboard.service.type=LoadBalancer", "dashboard.service.port=8443",
        "dashboard.service.annotations.team=insights", "images.dashboard.repository=reg/dash",
        "images.dashboard.tag=1.2.3", "dashboard.replicas=2",
        "dashboard.extraEnv.STOREFLEET_DASHBOARD_DB_POLL_SECONDS=10"))
    deployment, service = objects["Deployment"], objects["Service"]
    assert deployment["spec"]["replicas"] == 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "reg/dash:1.2.3"
    assert container["command"][-6:] == ["--port", "9000", "--allow-origin", "dash.example.com",
                                         "--allow-origin", "*.shop.io:443"]
    assert container["ports"] == [{"name": "http", "containerPort": 9000}]
    assert {"name": "STOREFLEET_DASHBOARD_DB_POLL_SECONDS", "value": "10"} in container["env"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 8443
    assert service["metadata"]["annotations"] == {"team": "insights"}


def test_notes_warn_when_origins_leave_out_port_forward(cluster: Cluster,
                                                      namespace: str) -> None:
    def notes(*sets: str) -> str:
        args = ["install", "sfnotes", str(CHART), "--namespace", namespace, "--dry-run=server"]
        for value in sets:
            args += ["--set", value]
        return helm(cluster, *args).stdout

    warning = 'dashboard.allowOrigins does not list "localhost:8080"'
    assert warning in notes("dashboard.allowOrigins={dash.example.com}")
    assert warning not in notes("dashboard.allowOrigins={dash.example.com,localhost:8080}")
    assert "port-forward" not in notes("dashboard.enabled=false")


@pytest.mark.parametrize(("value", "expected"), [
    ("dashboard.allowOrigins={https://dash.example.com}",
     "at '/dashboard/allowOrigins/0': 'https://dash.example.com' does not match"),
    ("dashboard.port=0", "at '/dashboard/port': minimum: got 0, want 1"),
    ("dashboard.replicas=-1", "at '/dashboard/replicas': minimum: got -1, want 0"),
    ("dashboard.service.type=Ingress", "at '/dashboard/service/type': value must be one of"),
    ("dashboard.enabled=yes", "at '/dashboard/enabled': got string, want boolean"),
    ("dashboard.ingress.enabled=true", "at '/dashboard': additional properties 'ingress'"),
    # Credentials come only from the endpoints Secret, never as a plain value.
    ("dashboard.extraEnv.STOREFLEET_REDIS_URL=redis://:pw@h",
     "at '/dashboard/extraEnv': additional properties 'STOREFLEET_REDIS_URL'"),
])
def test_values_schema_refuses_bad_dashboard_values(cluster: Cluster, value: str,
                                                     expected: str) -> None:
    result = helm(cluster, "template", "storefleet", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert expected in result.stderr
