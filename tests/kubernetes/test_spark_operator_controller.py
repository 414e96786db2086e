"""The real kubeflow Spark operator (v2.5.2, built from its Go module by
tools/spark-operator/install.sh) against the test API server, with nothing but the chart's
ServiceAccount, RBAC and args: a StoreFleet -> the StoreFleet operator's SparkApplications ->
the Spark operator runs spark-submit (pyspark's own, SPARK_HOME) -> driver pods that carry the
fleet's env, the shared PersistentVolumeClaims and fractional CPU requests, without any
mutating webhook. The platform-wide application goes the same way.

No kubelet runs, so drivers never start: the test checks what spark-submit wrote to the API
server (the driver pod, and the ConfigMap holding the executors' pod template).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.kubernetes.cluster import Cluster, Process, free_port, start_process, tool, wait_for
from tests.kubernetes.conftest import (
    GROUP,
    PLURAL,
    RELEASE_NAMESPACE,
    VERSION,
    Api,
    Operator,
    create_fleet,
    get_or_none,
    spark_app,
)

pytestmark = pytest.mark.kubernetes

SPARK_OPERATOR = "storefleet-spark-operator"


@pytest.fixture(scope="module")
def spark_operator(cluster: Cluster, api: Api, helm_release: str) -> Iterator[Process]:
    """The controller as the chart's Deployment runs it: its args, its ServiceAccount's token."""
    import pyspark

    from kubernetes import client


    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=3600))
    token = api.core.create_namespaced_service_account_token(
        SPARK_OPERATOR, RELEASE_NAMESPACE, request).status.token
    kubeconfig = cluster.kubeconfig_for_token("spark-operator", token)
    container = api.apps.read_namespaced_deployment(
        SPARK_OPERATOR, RELEASE_NAMESPACE).spec.template.spec.containers[0]
    # Only the probe port moves to a free loopback one (several test runs share the machine).
    args = [a for a in container.args if not a.startswith("--health-probe-bind-address=")]
    args.append(f"--health-probe-bind-address=127.0.0.1:{free_port()}")
    server = urlparse(cluster.server)
    env = {"PATH": os.environ["PATH"], "HOME": str(cluster.folder), "KUBECONFIG": str(kubeconfig),
           # What a pod gets from the kubelet; spark-submit's master URL is built from it.
           "KUBERNETES_SERVICE_HOST": str(server.hostname),
           "KUBERNETES_SERVICE_PORT": str(server.port),
           "SPARK_HOME": str(Path(pyspark.__file__).parent)}
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    process = start_process("spark-operator", [tool("spark-operator"), *args], cluster.folder,
                            env=env)
    yield process
    process.stop()


def driver_pod(api: Api, namespace: str, app: str) -> Any:
    return get_or_none(api.core.read_namespaced_pod, f"{app}-driver", namespace)


def wait_driver(api: Api, namespace: str, app: str, spark_operator: Process) -> Any:
    def submitted() -> Any:
        if not spark_operator.alive():
            raise RuntimeError(f"spark-operator exited:\n{spark_operator.tail()}")
        return driver_pod(api, namespace, app)

    try:
        return wait_for(f"spark-submit to create {app}'s driver pod", submitted, 120)
    except TimeoutError as exc:
        state = (spark_app(api, namespace, app) or {}).get("status")
        raise AssertionError(f"{exc}\nstatus: {state}\n{spark_operator.tail(40)}") from None


def executor_template(api: Api, namespace: str, driver: Any) -> dict[str, Any]:
    """The executors' pod template spark-submit stored for the driver (a mounted ConfigMap,
    created right after the pod)."""
    (volume,) = [v for v in driver.spec.volumes if v.name == "pod-template-volume"]
    config = wait_for(f"ConfigMap {volume.config_map.name}", lambda: get_or_none(
        api.core.read_namespaced_config_map, volume.config_map.name, namespace), 30)
    (text,) = config.data.values()
    return yaml.safe_load(text)


def claims_of(volumes: list[Any]) -> dict[str, str]:
    return {v.name: v.persistent_volume_claim.claim_name for v in volumes
            if v.persistent_volume_claim}


def test_the_platform_application_is_submitted(api: Api, spark_operator: Process) -> None:
    app = "storefleet-insights-platform"
    pod = wait_driver(api, RELEASE_NAMESPACE, app, spark_operator)
    wait_for("the application SUBMITTED", lambda: ((spark_app(api, RELEASE_NAMESPACE, app) or {})
             .get("status") or {}).get("applicationState", {}).get("state") == "SUBMITTED", 30)
    (container,) = pod.spec.containers
    env = {e.name: e.value for e in container.env}
    assert env["STOREFLEET_INSIGHTS_SCOPE"] == "platform"
    assert claims_of(pod.spec.volumes) == {"logs": "storefleet-logs",
                                           "checkpoints": "storefleet-checkpoints"}
    assert container.resources.requests["cpu"] == "100m"
    assert container.resources.limits["cpu"] == "1"
    assert pod.spec.service_account_name == "storefleet-spark"
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name) == ("SparkApplication", app)
    log = spark_operator.log.read_text(errors="replace")
    assert "forbidden" not in log.lower(), log[-3000:]


def test_a_fleet_s_jobs_get_env_and_volumes_without_a_webhook(
        api: Api, operator: Operator, spark_operator: Process) -> None:
    # The Spark operator runs the release namespace's applications: the fleet lives there.
    ns = RELEASE_NAMESPACE
    create_fleet(api, ns, "sparky", stores=3)
    try:
        for job in ("insights", "bonus"):
            pod = wait_driver(api, ns, f"sparky-{job}", spark_operator)
            (container,) = pod.spec.containers
            env = {e.name: e.value for e in container.env}
            assert env["STOREFLEET_FLEET_NAME"] == "sparky"
            assert env[f"STOREFLEET_{job.upper()}_CHECKPOINT_DIR"] == (
                f"/var/lib/storefleet/checkpoints/sparky-{job}")
            assert container.env_from[0].secret_ref.name == "storefleet-endpoints"
            assert claims_of(pod.spec.volumes) == {"logs": "storefleet-logs",
                                                   "checkpoints": "storefleet-checkpoints"}
            mounts = {m.name: m.mount_path for m in container.volume_mounts}
            assert mounts["logs"] == "/var/lib/storefleet/logs"
            assert container.resources.requests["cpu"] == "100m"
            assert pod.spec.enable_service_links is False
            assert pod.metadata.labels["storefleet.io/fleet"] == "sparky"
            # Executors get the same volumes and env (insight 9 reads logs on executors).
            template = executor_template(api, ns, pod)
            (executor,) = template["spec"]["containers"]
            assert executor["name"] == "spark-kubernetes-executor"
            volumes = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
                       for v in template["spec"]["volumes"]}
            assert volumes["logs"] == "storefleet-logs"
            assert volumes["checkpoints"] == "storefleet-checkpoints"
            assert {e["name"]: e.get("value") for e in executor["env"]}[
                "STOREFLEET_FLEET_NAME"] == "sparky"
        insights_env = {e.name: e.value for e in driver_pod(
            api, ns, "sparky-insights").spec.containers[0].env}
        assert insights_env["STOREFLEET_INSIGHTS_SCOPE"] == "fleet"
    finally:
        api.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "sparky")
    wait_for("the fleet's driver pods gone with it (owner references)",
             lambda: driver_pod(api, ns, "sparky-insights") is None
             and driver_pod(api, ns, "sparky-bonus") is None, 90)
