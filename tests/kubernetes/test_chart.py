"""The Helm chart: installs into a real API server, renders valid manifests, checks its values,
and grants the operator only what it needs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.kubernetes.cluster import Cluster, tool
from tests.kubernetes.conftest import (
    CHART,
    OPERATOR_SA,
    RELEASE_NAMESPACE,
    Api,
    helm,
)
from tests.kubernetes.schemas import SCHEMA_LOCATION, assert_kubeconform_accepts, write_schemas

pytestmark = pytest.mark.kubernetes

KUBE_VERSION = "1.36.3"


def render(cluster: Cluster, *values: str) -> list[dict]:
    args = ["template", "storefleet", str(CHART), "--namespace", RELEASE_NAMESPACE,
            "--kube-version", KUBE_VERSION, "--include-crds"]
    for value in values:
        args += ["--set", value]
    output = helm(cluster, *args).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def test_helm_install_deploys_the_release(cluster: Cluster, api: Api, helm_release: str) -> None:
    status = json.loads(helm(cluster, "status", helm_release, "--namespace", RELEASE_NAMESPACE,
                             "--output", "json").stdout)
    assert status["info"]["status"] == "deployed"
    deployment = api.apps.read_namespaced_deployment("storefleet-operator", RELEASE_NAMESPACE)
    pod = deployment.spec.template.spec
    assert deployment.spec.replicas == 1
    assert pod.service_account_name == OPERATOR_SA
    assert pod.containers[0].command == ["storefleet", "operator"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in pod.containers[0].args
    assert pod.security_context.run_as_non_root is True
    assert api.rbac.read_cluster_role("storefleet-operator").rules
    assert api.core.read_namespaced_service_account("storefleet-spark", RELEASE_NAMESPACE)
    crd = api.ext.read_custom_resource_definition("storefleets.storefleet.io")
    assert crd.spec.names.short_names == ["sf"]


@pytest.mark.parametrize("values", [(), ("operator.watchNamespaces={shop,demo}",
                                         "spark.serviceAccount.namespaces={shop,demo}")])
def test_kubeconform_validates_the_rendered_chart(cluster: Cluster, tmp_path: Path,
                                                  values: tuple[str, ...]) -> None:
    documents = render(cluster, *values)
    kinds = {(d["apiVersion"], d["kind"]) for d in documents}
    assert ("apps/v1", "Deployment") in kinds
    assert ("apiextensions.k8s.io/v1", "CustomResourceDefinition") in kinds
    assert_kubeconform_accepts(cluster, documents, tmp_path)


def test_kubeconform_catches_a_misspelt_field(cluster: Cluster, tmp_path: Path) -> None:
    documents = render(cluster)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["spec"]["replicaz"] = 2
    _, openapi = cluster.get("/openapi/v2")
    write_schemas(json.loads(openapi), tmp_path / "schemas", wanted={("apps/v1", "Deployment")})
    rendered = tmp_path / "bad.yaml"
    rendered.write_text(yaml.safe_dump(deployment))
    result = subprocess.run(
        [tool("kubeconform"), "-strict", "-schema-location",
         str(tmp_path / "schemas" / SCHEMA_LOCATION), str(rendered)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "replicaz" in result.stdout


@pytest.mark.parametrize(("value", "expected"), [
    ("operator.replicas=2", "additional properties 'replicas' not allowed"),
    ("images.pullPolicy=Sometimes", "at '/images/pullPolicy': value must be one of"),
    ("spark.jars={https://example.invalid/x.jar}", "does not match pattern '^local://'"),
])
def test_values_schema_refuses_bad_values(cluster: Cluster, value: str, expected: str) -> None:
    result = helm(cluster, "template", "storefleet", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert expected in result.stderr


def test_operator_rbac_is_least_privilege(api: Api, helm_release: str) -> None:
    from kubernetes import client

    user = f"system:serviceaccount:{RELEASE_NAMESPACE}:{OPERATOR_SA}"

    def allowed(verb: str, resource: str, group: str = "", subresource: str = "") -> bool:
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user, groups=["system:serviceaccounts"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, group=group, subresource=subresource,
                namespace="anywhere")))
        return api.authz.create_subject_access_review(review).status.allowed

    assert allowed("watch", "storefleets", "storefleet.io")
    assert allowed("patch", "storefleets", "storefleet.io", "status")
    assert allowed("create", "statefulsets", "apps")
    assert allowed("delete", "sparkapplications", "sparkoperator.k8s.io")
    assert allowed("create", "events")
    # Its fleets' <fleet>-ingest-token Secrets by server-side apply; it reads no Secret.
    assert allowed("create", "secrets") and allowed("patch", "secrets")
    assert not allowed("list", "secrets")
    assert not allowed("get", "secrets")
    assert not allowed("create", "pods")
    assert not allowed("delete", "storefleets", "storefleet.io")
    assert not allowed("create", "clusterroles", "rbac.authorization.k8s.io")
