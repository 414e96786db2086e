"""StoreFleet on a real node, as a user runs it (issue 9): `helm install`, a fleet, its jobs.

One module-scoped release of the chart (charts/storefleet/ci/cluster-values.yaml, images built
locally by tools/images/build.sh) on the node of tests/cluster/conftest.py; the tests run in
file order, each building on the state the one before left, and each waits on a condition with
a deadline. The insights driver is killed while the fleet is small, before the 40-store scale-up
and the webhook's load test, whose events the jobs then read through. What is checked is read
from the platform's own stores (PostgreSQL and Redis through their Services, the Kubernetes API,
the checkpoint folder on the node's volume) and compared with figures computed here from the
stored events.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from tests.cluster.conftest import NodeCluster, node, wait_for

sys.path.insert(0, str(Path(node.__file__).parent))
import release as cluster_release

# Each step waits on the platform for minutes (Spark on a 2-CPU node): a longer per-test limit.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

FLEET = "demo"
STORES = [f"{FLEET}-{n:04d}" for n in range(4)]
# analytics.watermarkSeconds of examples/storefleet.yaml (the FleetSpec default).
WATERMARK_SECONDS = 120


@pytest.fixture(scope="module")
def platform(node_cluster: NodeCluster) -> Iterator:  # type: ignore[type-arg]
    """The chart installed on the node with every pod Ready (images loaded first)."""
    release = cluster_release.Platform(node_cluster.kubeconfig)
    release.load_images()
    release.install_seconds = release.install()
    yield release


def test_helm_install_brings_every_pod_ready(platform) -> None:  # type: ignore[no-untyped-def]
    assert platform.not_ready_pods() == []
    crds = platform.kubectl("get", "crd", "-o", "name")
    assert "sparkapplications.sparkoperator.k8s.io" in crds
    assert "storefleets.storefleet.io" in crds
    print(json.dumps({"install_to_ready_s": round(platform.install_seconds, 1)}))


def test_fleet_runs_with_its_spark_applications(platform) -> None:  # type: ignore[no-untyped-def]
    platform.apply_fleet()
    platform.wait_fleet_running(FLEET, 900)
    fleet = platform.kubectl_json("get", "storefleet", FLEET)
    assert fleet["status"]["insights"]["state"] == "RUNNING"
    assert fleet["status"]["bonus"]["state"] == "RUNNING"
    assert platform.spark_state(f"{platform.release}-insights-platform") == "RUNNING"


def test_events_flow_to_insights_and_coupons(platform) -> None:  # type: ignore[no-untyped-def]
    since = datetime.now(UTC) - timedelta(minutes=30)
    wait_for("events of every store stored by the persister",
             lambda: set(STORES) <= platform.stores_reporting(FLEET, since), 300, interval=3)
    client = redis.Redis.from_url(platform.redis_url(), socket_timeout=10)
    scopes = [*STORES, f"ALL:{FLEET}", "ALL"]

    def insights_present() -> bool:
        return all(client.exists(f"storefleet:insights:{scope}:product_views")
                   for scope in scopes)

    wait_for("insights of every store, the fleet's ALL and the platform's ALL in Redis",
             insights_present, 420, interval=3)

    def coupons_issued_and_redeemed() -> bool:
        (issued,), = platform.query("SELECT count(*) FROM analytics.coupons")
        (redeemed,), = platform.query(
            "SELECT count(*) FROM conta_verde.coupons WHERE redeemed_order_id IS NOT NULL")
        return issued > 0 and redeemed > 0

    wait_for("coupons issued and redeemed", coupons_issued_and_redeemed, 600, interval=5)
    # The fleet's ALL is the sum of its stores for a closed minute (numbers from PostgreSQL).
    rows = platform.query(
        "SELECT minute, sum(product_views) FILTER (WHERE scope <> %s),"
        "       max(product_views) FILTER (WHERE scope = %s)"
        "  FROM analytics.insight_minute WHERE scope = ANY(%s)"
        "   AND minute < now() - interval '4 minutes' GROUP BY minute",
        f"ALL:{FLEET}", f"ALL:{FLEET}", [*STORES, f"ALL:{FLEET}"])
    closed = [(minute, stores, fleet) for minute, stores, fleet in rows if fleet is not None]
    assert all(stores == fleet for _, stores, fleet in closed), closed


def test_dashboard_answers_through_its_service(platform) -> None:  # type: ignore[no-untyped-def]
    host, port = platform.service_address("dashboard")
    response = wait_for("the dashboard through its Service", lambda: _get(host, port), 120)
    assert response.status_code in (200, 401), response.status_code


def _get(host: str, port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://{host}:{port}/", timeout=10)
    except httpx.HTTPError:
        return None


def _checkpoint_commits(platform, app: str) -> dict[Path, set[int]]:  # type: ignore[no-untyped-def]
    """Committed micro-batch ids per streaming query of `app`, read from the node's volume."""
    claim = platform.kubectl_json("get", "pvc", f"{platform.release}-checkpoints")
    volume = platform.kubectl_json("get", "pv", claim["spec"]["volumeName"])
    source = volume["spec"].get("hostPath") or volume["spec"].get("local") or {}
    root = Path(source["path"]) / app
    commits: dict[Path, set[int]] = {}
    for folder in root.rglob("commits"):
        commits[folder] = {int(p.name) for p in folder.iterdir() if p.name.isdigit()}
    return commits


def test_insights_driver_killed_resumes_from_its_checkpoint(platform) -> None:  # type: ignore[no-untyped-def]
    app = f"{FLEET}-insights"
    driver = platform.pods(f"sparkoperator.k8s.io/app-name={app},spark-role=driver")[0]
    # Every streaming query of the job (Kafka, DataCat files, dead letters...) has committed a
    # micro-batch, so each one has a checkpoint to resume from.
    before = wait_for(
        "every streaming query of the insights job to commit a micro-batch",
        lambda: (found := _checkpoint_commits(platform, app)) and all(found.values()) and found,
        900, interval=5)
    zero_times = {folder: (folder / "0").stat().st_mtime for folder in before
                  if (folder / "0").exists()}
    container = driver["status"]["containerStatuses"][0]["containerID"].split("://")[-1]
    paths = node.Paths(node.state_dir())
    subprocess.run(node.ctr(paths, "tasks", "kill", "--signal", "SIGKILL", container),
                   check=True, capture_output=True, timeout=60)

    def new_driver_running() -> bool:
        pods = platform.pods(f"sparkoperator.k8s.io/app-name={app},spark-role=driver")
        return any(p["metadata"]["uid"] != driver["metadata"]["uid"] and platform.pod_ready(p)
                   for p in pods) and platform.spark_state(app) == "RUNNING"

    wait_for("the Spark operator to restart the insights driver", new_driver_running, 600,
             interval=3)

    def went_on() -> bool:
        after = _checkpoint_commits(platform, app)
        return all(max(after.get(folder, {-1})) > max(ids) for folder, ids in before.items())

    wait_for("new micro-batches after the restart", went_on, 600, interval=3)
    after = _checkpoint_commits(platform, app)
    for folder, ids in before.items():
        # Resumed, not restarted: the batches committed before stay as they were.
        assert ids <= after[folder]
        if folder in zero_times:
            assert (folder / "0").stat().st_mtime == zero_times[folder]
    # No minute counted twice (nor missed): every minute the job has closed — its event-time
    # clock is past the minute's end plus the watermark — holds exactly the stored events'
    # count, the minute of the kill included.
    killed_minute = platform.query("SELECT date_trunc('minute', now())")[0][0]

    def closed_before() -> datetime | None:
        rows = platform.query(
            "SELECT minute - interval '1 minute' - make_interval(secs => %s)"
            "  FROM analytics.insight_clock WHERE name = %s", WATERMARK_SECONDS, f"fleet:{FLEET}")
        return rows[0][0] if rows and rows[0][0] > killed_minute else None

    horizon = wait_for("the insights job to close the minute of the kill", closed_before, 900,
                       interval=5)
    store = STORES[0]
    expected = dict(platform.query(
        "SELECT date_trunc('minute', ts), count(*) FROM analytics.events"
        " WHERE store_id = %s AND type = 'product_view' AND ts < %s GROUP BY 1", store, horizon))
    computed = dict(platform.query(
        "SELECT minute, product_views FROM analytics.insight_minute"
        " WHERE scope = %s AND minute < %s AND product_views > 0", store, horizon))
    assert killed_minute in expected
    assert computed == expected


def test_scale_to_40_stores(platform) -> None:  # type: ignore[no-untyped-def]
    since = datetime.now(UTC)
    platform.scale_fleet(FLEET, 40)
    expected = {f"{FLEET}-{n:04d}" for n in range(40)}
    wait_for("40 stores reporting", lambda: expected <= platform.stores_reporting(FLEET, since),
             600, interval=3)
    fleet = platform.kubectl_json("get", "storefleet", FLEET)
    assert fleet["spec"]["stores"] == 40
    wait_for("status.stores 40", lambda: platform.kubectl_json(
        "get", "storefleet", FLEET)["status"].get("stores") == 40, 300, interval=3)


def test_webhook_hpa_adds_a_pod_under_load_and_scales_back(platform) -> None:  # type: ignore[no-untyped-def]
    hpa = platform.kubectl_json("get", "hpa", f"{platform.release}-webhook")
    low = hpa["spec"]["minReplicas"]
    wait_for("the HPA to read CPU figures", lambda: hpa_has_metrics(platform), 300, interval=3)
    with platform.webhook_load() as counts:
        wait_for("the webhook HPA to add a pod", lambda: platform.hpa_desired() > low, 600,
                 interval=3)
    assert counts["accepted"] > 0
    wait_for("the webhook HPA to scale back without load",
             lambda: platform.hpa_desired() == low, 600, interval=5)


def hpa_has_metrics(platform) -> bool:  # type: ignore[no-untyped-def]
    hpa = platform.kubectl_json("get", "hpa", f"{platform.release}-webhook")
    current = hpa.get("status", {}).get("currentMetrics") or []
    return any(m.get("resource", {}).get("current", {}).get("averageUtilization") is not None
               for m in current)


def test_deleting_the_fleet_removes_its_pods_and_applications(platform) -> None:  # type: ignore[no-untyped-def]
    platform.kubectl("delete", "storefleet", FLEET, "--wait=false")

    def gone() -> bool:
        apps = platform.kubectl_json("get", "sparkapplications.sparkoperator.k8s.io")["items"]
        fleet_apps = [a for a in apps if a["metadata"]["name"].startswith(f"{FLEET}-")]
        pods = platform.pods(f"storefleet.io/fleet={FLEET}")
        spark_pods = [p for p in platform.pods("spark-role")
                      if p["metadata"]["labels"].get("sparkoperator.k8s.io/app-name", "")
                      .startswith(f"{FLEET}-")]
        return not fleet_apps and not pods and not spark_pods

    wait_for("the fleet's children to go", gone, 300, interval=3)


def test_helm_uninstall_leaves_nothing(platform) -> None:  # type: ignore[no-untyped-def]
    platform.uninstall()
    selector = f"app.kubernetes.io/instance={platform.release}"
    kinds = "all,configmaps,secrets,pvc,serviceaccounts,roles,rolebindings,jobs,hpa,pdb"

    def nothing_left() -> bool:
        left = platform.kubectl("get", kinds, "-l", selector, "-o", "name")
        pods = platform.pods()
        cluster_wide = platform.kubectl("get", "clusterroles,clusterrolebindings", "-l",
                                        selector, "-o", "name")
        return not left.strip() and not pods and not cluster_wide.strip()

    wait_for("nothing of the release left", nothing_left, 300, interval=3)
