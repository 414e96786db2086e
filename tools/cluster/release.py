"""StoreFleet on the test node: install the chart, run a fleet, and measure it (issue 9).

    python3 tools/cluster/release.py bench      # = `storefleet bench cluster --json`

The steps a user takes on a cluster, as functions the cluster tests (tests/cluster/
test_platform.py) and the cluster benchmark share: load the locally built images into the node,
`helm install` the chart with charts/storefleet/ci/cluster-values.yaml, `kubectl apply` a
StoreFleet, `kubectl scale` it, load the webhook, and read what the platform wrote, straight
from its PostgreSQL and Redis through their ClusterIP Services (the host routes the Service
range into the node's bridge; nothing leaves this machine).

Reads: the running node (tools/cluster/node.py: kubeconfig, tools), the images
localhost/storefleet/<name>:dev in podman's store (tools/images/build.sh), the chart.
`bench` brings the node up and ALWAYS takes it down, and prints one JSON object:
  install_to_ready_s   `helm install` until every pod of the release is Ready (warm images)
  fleet_ready_s        `kubectl apply` of the fleet until its pods are Ready and both of its
                       SparkApplications are RUNNING
  scale_4_to_40_s      `kubectl scale storefleet/demo --replicas=40` until 40 stores report
                       (events of each of the 40 stores stored by the persister)
  hpa_scale_up_s       load on the webhook Service until its HPA wants more than one pod
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import node

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "storefleet"
CLUSTER_VALUES = CHART / "ci" / "cluster-values.yaml"
EXAMPLE_FLEET = ROOT / "examples" / "storefleet.yaml"
RELEASE = "storefleet"
NAMESPACE = "storefleet"
# Every image the chart and a fleet use on the test node (tools/images/build.sh builds them).
PLATFORM_IMAGES = ("workloads", "operator", "spark", "dashboard", "spark-operator", "kafka",
                   "postgresql", "redis")
IMAGE_PREFIX = "localhost/storefleet"

wait_for = node.wait_for


class Platform:
    """The chart's release on the running node, and how to reach what it runs.

    `kubeconfig` is the node's admin kubeconfig; every call runs the node's kubectl/helm.
    Errors: node.ClusterError from a failed command or a missed deadline.
    """

    def __init__(self, kubeconfig: Path, namespace: str = NAMESPACE,
                 release: str = RELEASE) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.release = release

    # -- commands ---------------------------------------------------------------------------
    def _run(self, argv: list[str], input_text: str | None = None, check: bool = True,
             timeout: float = 120.0) -> str:
        result = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise node.ClusterError(f"{' '.join(argv[:4])} ... failed: {result.stderr.strip()}")
        return result.stdout

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True,
                timeout: float = 120.0) -> str:
        """kubectl in the release namespace (override with -n/--all-namespaces in args)."""
        argv = [str(node.tools_dir() / "kubectl"), f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}", *args]
        return self._run(argv, input_text, check, timeout)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 300.0) -> str:
        argv = [str(node.tools_dir() / "helm"), f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}", *args]
        return self._run(argv, timeout=timeout)

    # -- install ----------------------------------------------------------------------------
    def load_images(self, names: tuple[str, ...] = PLATFORM_IMAGES) -> float:
        """Import the platform's images from podman into the node; seconds taken."""
        started = time.monotonic()
        refs = [f"{IMAGE_PREFIX}/{name}:dev" for name in names]
        self._run([sys.executable, node.__file__, "load-image", *refs],
                  timeout=1800)
        return time.monotonic() - started

    def install(self, *extra_values: Path) -> float:
        """`helm install` the chart with the cluster values; seconds until every pod is Ready."""
        started = time.monotonic()
        values: list[str] = []
        for path in (CLUSTER_VALUES, *extra_values):
            values += ["--values", str(path)]
        self.helm("install", self.release, str(CHART), "--create-namespace", *values,
                  timeout=600)
        self.wait_pods_ready(600)
        return time.monotonic() - started

    def uninstall(self) -> None:
        self.helm("uninstall", self.release, "--wait", "--timeout=5m", timeout=420)

    # -- state ------------------------------------------------------------------------------
    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "pods"] + (["-l", selector] if selector else [])
        return self.kubectl_json(*args)["items"]

    @staticmethod
    def pod_ready(pod: dict[str, Any]) -> bool:
        conditions = pod.get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def not_ready_pods(self, selector: str | None = None) -> list[str]:
        """Names of pods that should run but are not Ready (finished Job pods do not count)."""
        waiting = []
        for pod in self.pods(selector):
            if pod["status"].get("phase") == "Succeeded":
                continue
            if pod["metadata"].get("deletionTimestamp") or not self.pod_ready(pod):
                waiting.append(f"{pod['metadata']['name']} ({pod['status'].get('phase')})")
        return waiting

    def wait_pods_ready(self, timeout: float, selector: str | None = None) -> None:
        def ready() -> bool:
            pods = self.pods(selector)
            return bool(pods) and not self.not_ready_pods(selector)

        try:
            wait_for(f"every pod in {self.namespace} Ready", ready, timeout, interval=2)
        except node.ClusterError as exc:
            raise node.ClusterError(f"{exc}; not ready: {self.not_ready_pods(selector)}") from None

    def spark_state(self, name: str) -> str:
        """The SparkApplication's `.status.applicationState.state`; "" while it does not exist."""
        found = self.kubectl("get", "sparkapplications.sparkoperator.k8s.io", name,
                             "--ignore-not-found", "-o", "json")
        if not found.strip():
            return ""
        return json.loads(found).get("status", {}).get("applicationState", {}).get("state", "")

    def service_address(self, component: str) -> tuple[str, int]:
        """(ClusterIP, first port) of the release's Service of a component."""
        service = self.kubectl_json("get", "service", f"{self.release}-{component}")
        return service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]

    def secret(self, name: str) -> dict[str, str]:
        data = self.kubectl_json("get", "secret", name).get("data", {})
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def endpoints(self) -> dict[str, str]:
        return self.secret(f"{self.release}-endpoints")

    def pg_dsn(self) -> str:
        """The platform's PostgreSQL DSN, pointed at its Service's ClusterIP."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(self.endpoints()["STOREFLEET_PG_DSN"])
        params["host"], params["port"] = self.service_address("postgresql")
        params["connect_timeout"] = 10
        return make_conninfo(**params)

    def redis_url(self) -> str:
        from urllib.parse import urlsplit, urlunsplit

        url = urlsplit(self.endpoints()["STOREFLEET_REDIS_URL"])
        host, port = self.service_address("redis")
        auth = url.netloc.rpartition("@")[0]
        netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
        return urlunsplit(url._replace(netloc=netloc))

    def query(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.pg_dsn()) as conn:
            return conn.execute(sql, params).fetchall()

    # -- fleets -----------------------------------------------------------------------------
    def apply_fleet(self, manifest: Path = EXAMPLE_FLEET) -> None:
        self.kubectl("apply", "-f", str(manifest))

    def scale_fleet(self, fleet: str, stores: int) -> None:
        self.kubectl("scale", f"storefleet/{fleet}", f"--replicas={stores}")

    def stores_reporting(self, fleet: str, since: datetime) -> set[str]:
        """Stores of `fleet` whose events the persister stored after `since`."""
        rows = self.query(
            "SELECT DISTINCT store_id FROM analytics.events"
            " WHERE ingested_at >= %s AND store_id LIKE %s",
            since, f"{fleet}-%")
        return {row[0] for row in rows}

    def wait_fleet_running(self, fleet: str, timeout: float) -> None:
        """The fleet's pods Ready and its SparkApplications RUNNING with driver and executors."""
        def running() -> bool:
            if self.not_ready_pods(f"storefleet.io/fleet={fleet}"):
                return False
            for job in ("insights", "bonus"):
                if self.spark_state(f"{fleet}-{job}") != "RUNNING":
                    return False
                for role in ("driver", "executor"):
                    pods = self.pods(f"sparkoperator.k8s.io/app-name={fleet}-{job},"
                                     f"spark-role={role}")
                    if not any(self.pod_ready(p) for p in pods):
                        return False
            return True

        wait_for(f"fleet {fleet} running", running, timeout, interval=3)

    # -- load -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def webhook_load(self, threads: int = 4, batch: int = 200) -> Iterator[dict[str, int]]:
        """Post batches of valid events to the webhook Service from `threads` threads.

        Yields counters {"accepted", "refused"}; the load stops when the block exits. The
        events belong to store `loadtest-0000` (no fleet's), sent with the admin token.
        """
        import httpx

        host, port = self.service_address("webhook")
        token = self.secret(f"{self.release}-webhook")["token"]
        stop = threading.Event()
        counts = {"accepted": 0, "refused": 0}
        lock = threading.Lock()

        def post_forever() -> None:
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=10,
                              headers={"Authorization": f"Bearer {token}"}) as client:
                while not stop.is_set():
                    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                    events = [{"event_id": f"load-{uuid.uuid4().hex}", "ts": now,
                               "store_id": "loadtest-0000", "user_id": i, "type": "home"}
                              for i in range(batch)]
                    try:
                        response = client.post("/v1/events", json=events)
                        ok = response.status_code == 202
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        counts["accepted" if ok else "refused"] += batch

        workers = [threading.Thread(target=post_forever, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        try:
            yield counts
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)

    def hpa_desired(self) -> int:
        hpa = self.kubectl_json("get", "hpa", f"{self.release}-webhook")
        return int(hpa.get("status", {}).get("desiredReplicas") or 0)


def bench() -> dict[str, Any]:
    """Bring the node up, measure install/fleet/scale/HPA, take it down; the figures."""
    figures: dict[str, Any] = {"benchmark": "cluster"}
    up = subprocess.run([sys.executable, node.__file__, "up"], capture_output=True,
                        text=True, check=False)
    try:
        if up.returncode != 0:
            raise node.ClusterError(f"tools/cluster/up failed: {up.stderr[-3000:]}")
        platform = Platform(Path(up.stdout.strip().splitlines()[-1]))
        figures["load_images_s"] = round(platform.load_images(), 1)
        figures["install_to_ready_s"] = round(platform.install(), 1)
        started = time.monotonic()
        platform.apply_fleet()
        platform.wait_fleet_running("demo", 900)
        figures["fleet_ready_s"] = round(time.monotonic() - started, 1)
        since = datetime.now(UTC)
        started = time.monotonic()
        platform.scale_fleet("demo", 40)
        wait_for("40 stores reporting", lambda: len(platform.stores_reporting("demo", since))
                 >= 40, 600, interval=2)
        figures["scale_4_to_40_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        with platform.webhook_load():
            wait_for("the webhook HPA to add a pod", lambda: platform.hpa_desired() > 1, 600,
                     interval=2)
        figures["hpa_scale_up_s"] = round(time.monotonic() - started, 1)
    finally:
        subprocess.run([sys.executable, node.__file__, "down"], capture_output=True,
                       check=False)
    return figures


def main(argv: list[str]) -> int:
    if argv[1:] != ["bench"]:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    print(json.dumps(bench()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
