"""The chart's Spark part against a real API server: the kubeflow Spark operator (controller,
least-privilege RBAC, CRDs generated from its Go module), the platform-wide insights
SparkApplication, and the shared volumes (PersistentVolumeClaims) the Spark pods mount.

No kubelet runs: the controller pod stays Pending, so the tests check what the API server holds
and what it authorizes (SubjectAccessReview), and that the CRDs' schemas keep every field the
chart and the operator write (a pruned field would silently change a job).
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.kubernetes.cluster import Cluster
from tests.kubernetes.conftest import CHART, RELEASE_NAMESPACE, ROOT, SPARK, Api, helm

pytestmark = pytest.mark.kubernetes

SPARK_OPERATOR = "storefleet-spark-operator"
PLATFORM_APP = "storefleet-insights-platform"


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_spark_operator_crds_are_generated_from_the_module() -> None:
    # controller-gen over github.com/kubeflow/spark-operator/v2's api/ (the version the chart
    # pins) must give exactly the committed files.
    done = subprocess.run([str(ROOT / "tools" / "spark-operator" / "gen-crds.sh"), "--check"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in (CHART / "crds").glob("sparkoperator.k8s.io_*.yaml"))
    assert names == ["sparkoperator.k8s.io_scheduledsparkapplications.yaml",
                     "sparkoperator.k8s.io_sparkapplications.yaml",
                     "sparkoperator.k8s.io_sparkconnects.yaml"]


def test_spark_operator_controller_is_installed(api: Api, helm_release: str) -> None:
    deployment = api.apps.read_namespaced_deployment(SPARK_OPERATOR, RELEASE_NAMESPACE)
    pod = deployment.spec.template.spec
    (container,) = pod.containers
    assert deployment.spec.replicas == 1
    assert pod.service_account_name == SPARK_OPERATOR
    assert container.image == "ghcr.io/kubeflow/spark-operator/controller:2.5.2"
    # Flags of v2.5's `spark-operator controller start` (cmd/operator/controller/start.go).
    assert container.args[:2] == ["controller", "start"]
    assert f"--namespaces={RELEASE_NAMESPACE}" in container.args
    assert "--leader-election=false" in container.args
    assert "--enable-ui-service=false" in container.args
    assert container.liveness_probe.http_get.port == "health"
    assert {m.mount_path for m in container.volume_mounts} == {"/tmp"}
    assert container.security_context.read_only_root_filesystem is True
    for name in ("sparkapplications", "scheduledsparkapplications", "sparkconnects"):
        crd = api.ext.read_custom_resource_definition(f"{name}.sparkoperator.k8s.io")
        assert crd.spec.versions[0].subresources.status is not None, name


def allowed(api: Api, user: str, verb: str, resource: str, namespace: str | None,
            group: str = "", subresource: str = "") -> bool:
    from kubernetes import client

    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=["system:serviceaccounts"],
        resource_attributes=client.V1ResourceAttributes(
            verb=verb, resource=resource, group=group, subresource=subresource,
            namespace=namespace)))
    return api.authz.create_subject_access_review(review).status.allowed


def test_spark_operator_rbac_is_least_privilege(api: Api, helm_release: str) -> None:
    user = f"system:serviceaccount:{RELEASE_NAMESPACE}:{SPARK_OPERATOR}"
    ns = RELEASE_NAMESPACE

    def can(verb: str, resource: str, namespace: str | None = ns, group: str = "",
            subresource: str = "") -> bool:
        return allowed(api, user, verb, resource, namespace, group, subresource)

    # spark-submit in the controller creates the driver pod, its Service and ConfigMap.
    assert can("create", "pods") and can("delete", "pods") and can("watch", "pods")
    assert can("create", "services") and can("create", "configmaps")
    assert can("create", "events")
    assert can("watch", "sparkapplications", group=SPARK[0])
    assert can("update", "sparkapplications", group=SPARK[0], subresource="status")
    assert can("update", "sparkapplications", group=SPARK[0], subresource="finalizers")
    assert can("get", "customresourcedefinitions", None, "apiextensions.k8s.io")
    # Only in the namespaces of Spark jobs, and nothing it does not need.
    assert not can("create", "pods", "kube-system")
    assert not can("list", "pods", None)
    assert not can("get", "secrets")
    assert not can("create", "persistentvolumeclaims")
    assert not can("create", "ingresses", group="networking.k8s.io")
    assert not can("update", "sparkapplications", group=SPARK[0])
    assert not can("create", "roles", group="rbac.authorization.k8s.io")


def test_the_platform_insights_application(api: Api, helm_release: str) -> None:
    app = api.custom.get_namespaced_custom_object(*SPARK[:2], RELEASE_NAMESPACE, SPARK[2],
                                                  PLATFORM_APP)
    spec = app["spec"]
    assert spec["arguments"] == ["insights", "run"]
    assert spec["restartPolicy"]["type"] == "Always"
    assert spec["driver"]["serviceAccount"] == "storefleet-spark"
    assert spec["driver"]["coreRequest"] == "100m" and spec["executor"]["coreLimit"] == "1"
    for role, container_name in (("driver", "spark-kubernetes-driver"),
                                 ("executor", "spark-kubernetes-executor")):
        # The API server kept the pod template whole (its schema preserves unknown fields).
        template = spec[role]["template"]["spec"]
        (container,) = template["containers"]
        assert container["name"] == container_name
        env = env_of(container)
        assert env["STOREFLEET_INSIGHTS_SCOPE"] == "platform"
        assert "STOREFLEET_FLEET_NAME" not in env
        assert env["STOREFLEET_EVENTS_TOPIC"] == "events"
        assert env["STOREFLEET_INSIGHTS_MAX_OFFSETS_PER_TRIGGER"] == "10000"
        assert env["STOREFLEET_INSIGHTS_CHECKPOINT_DIR"] == (
            f"/var/lib/storefleet/checkpoints/{PLATFORM_APP}")
        assert container["envFrom"] == [{"secretRef": {"name": "storefleet-endpoints"}}]
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
                  for v in template["volumes"]}
        assert claims["logs"] == "storefleet-logs"
        assert claims["checkpoints"] == "storefleet-checkpoints"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["logs"] == env["STOREFLEET_LOGS_DIR"] == "/var/lib/storefleet/logs"
        assert mounts["checkpoints"] == "/var/lib/storefleet/checkpoints"


def test_shared_volumes_are_persistent_volume_claims(api: Api, helm_release: str) -> None:
    for name, size in (("storefleet-logs", "2Gi"), ("storefleet-checkpoints", "1Gi")):
        claim = api.core.read_namespaced_persistent_volume_claim(name, RELEASE_NAMESPACE)
        assert claim.spec.access_modes == ["ReadWriteOnce"]
        assert claim.spec.resources.requests["storage"] == size
    operator = api.apps.read_namespaced_deployment("storefleet-operator", RELEASE_NAMESPACE)
    env = {e.name: e.value for e in operator.spec.template.spec.containers[0].env}
    assert env["STOREFLEET_LOGS_CLAIM"] == "storefleet-logs"
    assert env["STOREFLEET_CHECKPOINTS_CLAIM"] == "storefleet-checkpoints"


def render(cluster: Cluster, *flags: str) -> list[dict[str, Any]]:
    import yaml

    args = ["template", "storefleet", str(CHART), "--namespace", RELEASE_NAMESPACE,
            "--kube-version", "1.36.3", *flags]
    return [d for d in yaml.safe_load_all(helm(cluster, *args).stdout) if d]


def test_one_events_topic_reaches_every_reader_and_writer(cluster: Cluster) -> None:
    documents = render(cluster, "--set", "kafka.topics.events=shop-events")
    seen = {}
    for doc in documents:
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                if "STOREFLEET_EVENTS_TOPIC" in env:
                    seen[doc["metadata"]["name"]] = env["STOREFLEET_EVENTS_TOPIC"]
        if doc["kind"] == "SparkApplication":
            for role in ("driver", "executor"):
                (container,) = doc["spec"][role]["template"]["spec"]["containers"]
                seen[f"{doc['metadata']['name']}/{role}"] = env_of(container)[
                    "STOREFLEET_EVENTS_TOPIC"]
    # The operator passes it on to every fleet's jobs (tests/unit/test_operator_children.py).
    assert seen == {name: "shop-events" for name in (
        "storefleet-webhook", "storefleet-persister", "storefleet-operator",
        f"{PLATFORM_APP}/driver", f"{PLATFORM_APP}/executor")}


def test_switches_and_job_namespaces(cluster: Cluster) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in render(
        cluster, "--set", "sparkOperator.enabled=false", "--set", "insights.platform.enabled=false",
        "--set", "sharedVolumes.logs.enabled=false",
        "--set", "sharedVolumes.checkpoints.existingClaim=nfs-checkpoints")}
    assert not {k for k in kinds if "spark-operator" in k[1] or k[0] == "SparkApplication"}
    assert not {k for k in kinds if k[0] == "PersistentVolumeClaim"}
    (operator,) = [d for d in render(cluster, "--set", "sharedVolumes.logs.enabled=false",
                                     "--set", "sharedVolumes.checkpoints.existingClaim=nfs-cp")
                   if d["kind"] == "Deployment" and d["metadata"]["name"] == "storefleet-operator"]
    env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert (env["STOREFLEET_LOGS_CLAIM"], env["STOREFLEET_CHECKPOINTS_CLAIM"]) == ("", "nfs-cp")
    everywhere = render(cluster, "--set-json", 'sparkOperator.jobNamespaces=[""]')
    (deployment,) = [d for d in everywhere if d["metadata"]["name"] == SPARK_OPERATOR
                     and d["kind"] == "Deployment"]
    assert '--namespaces=""' in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    (role,) = [d for d in everywhere if d["kind"] == "ClusterRole"
               and d["metadata"]["name"] == SPARK_OPERATOR]
    assert any("pods" in rule["resources"] for rule in role["rules"])
    assert not [d for d in everywhere if d["kind"] == "Role"
                and d["metadata"]["name"] == SPARK_OPERATOR]
    two = render(cluster, "--set", "operator.watchNamespaces={shop,demo}")
    roles = {d["metadata"]["namespace"] for d in two
             if d["kind"] == "Role" and d["metadata"]["name"] == SPARK_OPERATOR}
    claims = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in two
              if d["kind"] == "PersistentVolumeClaim"}
    assert roles == {RELEASE_NAMESPACE, "shop", "demo"}
    assert claims == {(ns, f"storefleet-{v}") for ns in roles for v in ("logs", "checkpoints")}


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def requested_cpu(documents: list[dict[str, Any]]) -> dict[str, int]:
    """CPU millicores each workload asks for when it runs: containers x replicas (the webhook's
    HPA minimum), Spark pods by their coreRequest (driver + executor instances)."""
    hpa_min = {d["spec"]["scaleTargetRef"]["name"]: d["spec"]["minReplicas"]
               for d in documents if d["kind"] == "HorizontalPodAutoscaler"}
    asked = {}
    for doc in documents:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            replicas = hpa_min.get(doc["metadata"]["name"], doc["spec"].get("replicas", 1))
            containers = doc["spec"]["template"]["spec"]["containers"]
            asked[name] = replicas * sum(cpu_millis(c["resources"]["requests"]["cpu"])
                                         for c in containers)
        elif doc["kind"] == "SparkApplication":
            spec = doc["spec"]
            asked[name] = (cpu_millis(spec["driver"]["coreRequest"])
                           + spec["executor"]["instances"]
                           * cpu_millis(spec["executor"]["coreRequest"]))
    return asked


@pytest.mark.parametrize(("values", "budget"), [
    # 2 CPUs less what a node's own pods ask (CoreDNS 100m, metrics-server 100m).
    ((), 1800),
    (("--values", str(CHART / "ci" / "cluster-values.yaml")), 1300),
])
def test_default_requests_fit_a_two_cpu_node_with_one_fleet(
        cluster: Cluster, api: Api, helm_release: str, values: tuple[str, ...],
        budget: int) -> None:
    import yaml

    from storefleet.fleet import load_manifest
    from storefleet_operator.children import desired_children
    from storefleet_operator.settings import OperatorSettings
    from tests.kubernetes.conftest import chart_operator_env

    documents = render(cluster, *values)
    # The example fleet's children, made by the operator with the settings this render gives it.
    (operator,) = [d for d in documents if d["kind"] == "Deployment"
                   and d["metadata"]["name"] == "storefleet-operator"]
    env = {e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0][
        "env"] if "value" in e}
    env["STOREFLEET_INGEST_TOKEN_KEY"] = chart_operator_env(api)["STOREFLEET_INGEST_TOKEN_KEY"]
    (fleet,) = load_manifest(ROOT / "examples" / "storefleet.yaml")
    children = desired_children(fleet, namespace=RELEASE_NAMESPACE, owner_uid="u",
                                settings=OperatorSettings.from_env(env))
    asked = requested_cpu(documents + yaml.safe_load(yaml.safe_dump(children)))
    assert f"SparkApplication/{PLATFORM_APP}" in asked and "SparkApplication/demo-bonus" in asked
    assert sum(asked.values()) <= budget, sorted(asked.items())
