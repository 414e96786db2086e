"""The single-node cluster of tools/cluster really runs pods: from a locally loaded image, behind a
ClusterIP Service found by cluster DNS, with a PVC of the default class, and with metrics.

Each check is against the running cluster (kubelet, containerd, CNI, kube-proxy, CoreDNS,
local-path provisioner, metrics-server); expected values are made here, not read back from the
code under test.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import NODE, NodeCluster, node, wait_for

pytestmark = pytest.mark.cluster


def pod(name: str, image: str, command: list[str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, **spec.pop("pod_spec", {}),
                     "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                     "command": command, **spec}]}}


def phase(cluster: NodeCluster, namespace: str, name: str) -> str:
    return cluster.kubectl_json("-n", namespace, "get", "pod", name)["status"].get("phase", "")


def wait_running(cluster: NodeCluster, namespace: str, name: str) -> None:
    def ready() -> bool:
        status = cluster.kubectl_json("-n", namespace, "get", "pod", name)["status"]
        assert status.get("phase") not in ("Failed", "Succeeded"), status
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in status.get("conditions", []))

    wait_for(f"pod {namespace}/{name} Ready", ready, 120)


def image_archive(path: Path, reference: str, files: dict[str, bytes], busybox: bytes) -> None:
    """A docker-archive image made here from scratch: busybox as /bin/sh plus `files`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, data in {"bin/busybox": busybox, **files}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    layer_bytes = layer.getvalue()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers",
                   "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]},
    }).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [reference],
                            "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(path, mode="w") as archive:
        for name, data in (("layer.tar", layer_bytes), ("config.json", config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_pod_runs_from_a_loaded_local_image(node_cluster: NodeCluster, namespace: str,
                                            tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    tag = uuid.uuid4().hex[:12]
    reference = f"localhost/storefleet-test/hello:{tag}"
    archive = tmp_path / "hello.tar"
    image_archive(archive, reference, {"hello.txt": token.encode()},
                  Path("/bin/busybox").read_bytes())
    loaded = subprocess.run([sys.executable, str(NODE), "load-image", str(archive)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert loaded.returncode == 0, loaded.stderr
    node_cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(
        pod("hello", reference, ["/bin/sh", "-c", "cat /hello.txt; echo; sleep 3600"])))
    wait_running(node_cluster, namespace, "hello")
    # Logs and exec go through the API server to the kubelet and containerd's stream server.
    wait_for("the pod's log", lambda: token in node_cluster.kubectl(
        "-n", namespace, "logs", "hello"), 30)
    assert node_cluster.kubectl("-n", namespace, "exec", "hello", "--",
                                "sh", "-c", "echo $((6 * 7))").strip() == "42"
    status = node_cluster.kubectl_json("-n", namespace, "get", "pod", "hello")["status"]
    assert status["containerStatuses"][0]["image"].endswith(f"storefleet-test/hello:{tag}")
    assert status["podIP"].startswith("10.244.0.")
    # containerd's image store is a cache that outlives the cluster: leave no test image in it.
    node_cluster.kubectl("-n", namespace, "delete", "pod", "hello", "--wait=true")
    paths = node.Paths(node.state_dir())
    removed = subprocess.run(node.ctr(paths, "images", "remove", reference), capture_output=True,
                             text=True, timeout=60, check=False)
    assert removed.returncode == 0, removed.stderr


def test_clusterip_service_and_dns_between_pods(node_cluster: NodeCluster,
                                                namespace: str) -> None:
    token = uuid.uuid4().hex
    busybox = node.addons.image("busybox")
    web = pod("web", busybox, ["sh", "-c", f"mkdir -p /www && echo {token} > /www/index.html"
                                           " && exec httpd -f -p 8080 -h /www"],
              readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1})
    client = pod("client", busybox, ["sleep", "3600"])
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    node_cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [web, client, service]}))
    wait_running(node_cluster, namespace, "web")
    wait_running(node_cluster, namespace, "client")
    cluster_ip = node_cluster.kubectl_json("-n", namespace, "get", "service",
                                           "web")["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.96.")

    def exec_client(*command: str) -> str:
        return node_cluster.kubectl("-n", namespace, "exec", "client", "--", *command,
                                    check=False)

    def http_get(host: str) -> str:
        # nc, not wget: Debian's static busybox wget crashes in a FROM-scratch image.
        reply = exec_client("sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 80")
        return reply.strip().splitlines()[-1] if reply.strip() else ""

    # Short name through the pod's search path, and the full name, both via the ClusterIP.
    for host in ("web", f"web.{namespace}.svc.cluster.local", cluster_ip):
        wait_for(f"http://{host}/ from the client pod", lambda host=host: http_get(host) == token,
                 60)
    lookup = exec_client("nslookup", f"web.{namespace}.svc.cluster.local")
    assert cluster_ip in lookup, lookup
    # Nothing leaves the machine: no default route in a pod, and names outside the cluster
    # domain are not forwarded anywhere.
    routes = exec_client("ip", "route")
    assert routes and "default" not in routes, routes
    assert "10.96.0.0/16 via 10.244.0.1" in routes, routes
    outside = exec_client("nslookup", "example.com")
    assert not re.search(r"Address: (?!10\.96\.0\.10)\d+\.\d+\.\d+\.\d+", outside), outside


def test_pvc_binds_and_is_writable(node_cluster: NodeCluster, namespace: str) -> None:
    token = uuid.uuid4().hex
    busybox = node.addons.image("busybox")
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "32Mi"}}}}
    volume = {"pod_spec": {"restartPolicy": "Never", "volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    writer = pod("writer", busybox, ["sh", "-c", f"echo {token} > /data/token"], **volume)
    node_cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [claim, writer]}))
    wait_for("the writer pod to finish", lambda: phase(node_cluster, namespace,
                                                       "writer") == "Succeeded", 120)
    bound = node_cluster.kubectl_json("-n", namespace, "get", "pvc", "data")
    assert bound["status"]["phase"] == "Bound"
    assert bound["spec"]["storageClassName"] == "local-path"  # the default class
    volume_name = bound["spec"]["volumeName"]
    persistent = node_cluster.kubectl_json("get", "pv", volume_name)
    host_folder = Path(persistent["spec"]["hostPath"]["path"])
    assert host_folder.is_relative_to(node.state_dir())
    assert (host_folder / "token").read_text().strip() == token
    # A second pod sees what the first one wrote.
    reader = pod("reader", busybox, ["cat", "/data/token"], **volume)
    node_cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(reader))
    wait_for("the reader pod to finish", lambda: phase(node_cluster, namespace,
                                                       "reader") == "Succeeded", 120)
    assert node_cluster.kubectl("-n", namespace, "logs", "reader").strip() == token


def test_kubectl_top_node_reports_usage(node_cluster: NodeCluster) -> None:
    def top() -> str | None:
        out = node_cluster.kubectl("top", "node", "--no-headers", check=False)
        return out if out.startswith(node.NODE_NAME) else None

    line = wait_for("kubectl top node", top, 120).split()
    # NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)
    assert re.fullmatch(r"\d+m", line[1]), line
    assert re.fullmatch(r"\d+Mi", line[3]), line
    assert int(line[3][:-2]) > 0
    pods = wait_for("kubectl top pod", lambda: node_cluster.kubectl(
        "top", "pod", "-n", "kube-system", "--no-headers", check=False), 120)
    assert "coredns" in pods


def test_hpa_reads_cpu_metrics(node_cluster: NodeCluster, namespace: str) -> None:
    """The controller manager's autoscaler gets CPU figures through metrics-server."""
    busybox = node.addons.image("busybox")
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "idle"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "idle"}},
                 "template": {"metadata": {"labels": {"app": "idle"}},
                              "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                                  "name": "main", "image": busybox, "imagePullPolicy": "Never",
                                  "command": ["sleep", "3600"],
                                  "resources": {"requests": {"cpu": "10m"}}}]}}}}
    autoscaler = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "idle"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "idle"},
                 "minReplicas": 1, "maxReplicas": 2,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization",
                                               "averageUtilization": 80}}}]}}
    node_cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [deployment, autoscaler]}))

    def utilization() -> int | None:
        status = node_cluster.kubectl_json("-n", namespace, "get", "hpa", "idle")["status"]
        for metric in status.get("currentMetrics") or []:
            current = metric.get("resource", {}).get("current", {})
            if "averageUtilization" in current:
                return current["averageUtilization"] + 1  # 0 % is an answer too
        return None

    measured = wait_for("the HPA's CPU utilization", utilization, 180) - 1
    # `sleep` uses next to no CPU: far below the 80 % target, so one replica stays.
    assert 0 <= measured < 80
    hpa = node_cluster.kubectl_json("-n", namespace, "get", "hpa", "idle")
    assert hpa["status"]["desiredReplicas"] == 1
