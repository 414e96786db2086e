"""Fixtures for tests against a real Kubernetes API server (see cluster.py).

Session: one control plane (etcd, kube-apiserver with RBAC, the garbage collector) with the
chart's CRDs installed (StoreFleet, and the Spark operator's, generated from its Go module); the
Helm chart installed into `storefleet-system`; the operator (`storefleet operator`, a real
subprocess) running with the chart's ServiceAccount token and the settings of the chart's
operator Deployment, so the chart's RBAC and Secrets are what the operator gets.
If the tools are missing the tests FAIL (run `make setup`), they are not skipped.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.cluster import Cluster, Process, start_cluster, start_process, tool, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "storefleet"
CRDS = sorted((CHART / "crds").glob("*.yaml"))
RELEASE, RELEASE_NAMESPACE = "storefleet", "storefleet-system"
OPERATOR_SA = "storefleet-operator"
GROUP, VERSION, PLURAL = "storefleet.io", "v1alpha1", "storefleets"
SPARK = ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")


def _client(kubeconfig: Path) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


@dataclass
class Api:
    """The official client's typed APIs on one connection."""

    client: Any

    def __post_init__(self) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(self.client)
        self.apps = client.AppsV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)
        self.ext = client.ApiextensionsV1Api(self.client)
        self.rbac = client.RbacAuthorizationV1Api(self.client)
        self.authz = client.AuthorizationV1Api(self.client)


def install_crds(cluster: Cluster) -> None:
    api = Api(_client(cluster.kubeconfig))
    for path in CRDS:
        crd = yaml.safe_load(path.read_text())
        api.ext.create_custom_resource_definition(crd)

        def established(name: str = crd["metadata"]["name"]) -> bool:
            conditions = api.ext.read_custom_resource_definition(name).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_for(f"CRD {crd['metadata']['name']} established", established, 30)
    api.client.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("kube")
    running = start_cluster(folder, before_controllers=install_crds)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[Api]:
    handle = Api(_client(cluster.kubeconfig))
    yield handle
    handle.client.close()


def helm_env(cluster: Cluster) -> dict[str, str]:
    home = cluster.folder / "helm"
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([tool("helm"), *args], env=helm_env(cluster), capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def kubectl(cluster: Cluster, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([tool("kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
                            input=stdin, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@contextlib.contextmanager
def completing_hook_jobs(api: Api, namespace: str) -> Iterator[None]:
    """Play the Job controller and kubelet for Helm hook Jobs in `namespace` (the chart's
    migrations Job): helm waits for them, and without a kubelet they would never finish."""
    from kubernetes import client

    batch = client.BatchV1Api(api.client)
    stop = threading.Event()

    def complete_new_jobs() -> None:
        while not stop.wait(0.2):
            with contextlib.suppress(Exception):  # the namespace may not exist yet
                for job in batch.list_namespaced_job(namespace).items:
                    hook = (job.metadata.annotations or {}).get("helm.sh/hook")
                    if not hook or (job.status and job.status.conditions):
                        continue
                    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    done = [{"type": kind, "status": "True", "lastTransitionTime": now,
                             "lastProbeTime": now} for kind in ("SuccessCriteriaMet", "Complete")]
                    batch.patch_namespaced_job_status(job.metadata.name, namespace, {"status": {
                        "startTime": now, "completionTime": now, "succeeded": 1,
                        "conditions": done}})

    thread = threading.Thread(target=complete_new_jobs, name=f"jobs-{namespace}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.fixture(scope="session")
def helm_release(cluster: Cluster, api: Api) -> str:
    """The chart installed as release `storefleet` into storefleet-system."""
    with completing_hook_jobs(api, RELEASE_NAMESPACE):
        helm(cluster, "install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE,
             "--create-namespace", "--timeout", "2m")
    return RELEASE


class Operator:
    """`storefleet operator` as a subprocess with a given kubeconfig; restartable."""

    def __init__(self, cluster: Cluster, kubeconfig: Path, settings: dict[str, str]):
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.settings = settings
        self.process: Process | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        executable = Path(sys.executable).with_name("storefleet")
        env = {**os.environ, **self.settings, "KUBECONFIG": str(self.kubeconfig),
               "STOREFLEET_IMAGE": "storefleet/workloads:test",
               "STOREFLEET_SPARK_IMAGE": "storefleet/spark:test"}
        self.process = start_process(f"operator-{self.starts}", [str(executable), "operator",
                                                                 "--verbose"],
                                     self.cluster.folder, env=env)
        wait_for("the operator to start watching", self._watching, 60)

    def _watching(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise RuntimeError(f"operator exited:\n{self.process.tail()}")
        return "Starting the watch-stream for storefleets" in self.process.log.read_text(
            errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def logs(self) -> str:
        return self.process.tail(60) if self.process else ""


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, api: Api, helm_release: str) -> Path:
    """Credentials of the chart's operator ServiceAccount: the chart's RBAC, nothing more."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc.cluster.local"],
                                       expiration_seconds=24 * 3600))
    token = api.core.create_namespaced_service_account_token(
        OPERATOR_SA, RELEASE_NAMESPACE, request).status.token
    return cluster.kubeconfig_for_token("operator", token)


def chart_operator_env(api: Api) -> dict[str, str]:
    """The STOREFLEET_* environment the chart's operator Deployment gives its container, Secret
    references resolved from the release's Secrets (the token key among them)."""
    deployment = api.apps.read_namespaced_deployment(OPERATOR_SA, RELEASE_NAMESPACE)
    env: dict[str, str] = {}
    for item in deployment.spec.template.spec.containers[0].env:
        ref = item.value_from.secret_key_ref if item.value_from else None
        if ref is not None:
            secret = api.core.read_namespaced_secret(ref.name, RELEASE_NAMESPACE)
            env[item.name] = base64.b64decode(secret.data[ref.key]).decode()
        elif item.value is not None:
            env[item.name] = item.value
    return env


@pytest.fixture(scope="session")
def operator(cluster: Cluster, api: Api, operator_kubeconfig: Path) -> Iterator[Operator]:
    running = Operator(cluster, operator_kubeconfig, chart_operator_env(api))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def namespace(api: Api) -> str:
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    api.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def fleet_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StoreFleet",
            "metadata": {"name": name}, "spec": spec}


def create_fleet(api: Api, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return api.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, fleet_manifest(name, **spec),
        field_validation="Strict")


def get_fleet(api: Api, namespace: str, name: str) -> dict[str, Any]:
    return api.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def patch_fleet(api: Api, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return api.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                     {"spec": spec})


def get_or_none(call: Any, *args: Any) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return call(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def spark_app(api: Api, namespace: str, name: str) -> dict[str, Any] | None:
    return get_or_none(api.custom.get_namespaced_custom_object, *SPARK[:2], namespace,
                       SPARK[2], name)


def statefulset_replicas(api: Api, namespace: str, name: str) -> int | None:
    sts = get_or_none(api.apps.read_namespaced_stateful_set, name, namespace)
    return sts.spec.replicas if sts else None


def set_ready_pods(api: Api, namespace: str, name: str, ready: int) -> None:
    """Play the kubelet + StatefulSet controller: report `ready` ready pods."""
    api.apps.patch_namespaced_stateful_set_status(
        name, namespace, {"status": {"replicas": ready, "readyReplicas": ready,
                                     "availableReplicas": ready}})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in (status or {}).get("conditions") or []:
        if item["type"] == type_:
            return item
    return {}


def fleet_events(api: Api, namespace: str, name: str) -> list[Any]:
    return api.core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=StoreFleet"
    ).items

