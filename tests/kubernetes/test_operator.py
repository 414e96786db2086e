"""The StoreFleet operator against a real API server: children, scale, status, GC, restart,
the per-fleet ingest token, and Spark applications that keep their pod templates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.kubernetes.cluster import wait_for
from tests.kubernetes.conftest import (
    GROUP,
    PLURAL,
    SPARK,
    VERSION,
    Api,
    Operator,
    condition,
    create_fleet,
    fleet_events,
    get_fleet,
    get_or_none,
    patch_fleet,
    set_ready_pods,
    spark_app,
    statefulset_replicas,
)

pytestmark = pytest.mark.kubernetes

CHILDREN = [("Secret", "ingest-token"), ("ConfigMap", "config"), ("StatefulSet", "simulator"),
            ("Deployment", "price-updater"), ("SparkApplication", "insights"),
            ("SparkApplication", "bonus")]


def read_child(api: Api, namespace: str, kind: str, name: str) -> Any:
    if kind == "Secret":
        return get_or_none(api.core.read_namespaced_secret, name, namespace)
    if kind == "ConfigMap":
        return get_or_none(api.core.read_namespaced_config_map, name, namespace)
    if kind == "StatefulSet":
        return get_or_none(api.apps.read_namespaced_stateful_set, name, namespace)
    if kind == "Deployment":
        return get_or_none(api.apps.read_namespaced_deployment, name, namespace)
    return spark_app(api, namespace, name)


def meta_of(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj["metadata"]
    return obj.metadata.to_dict() if hasattr(obj.metadata, "to_dict") else obj.metadata


def uid_of(obj: Any) -> str:
    meta = meta_of(obj)
    return meta["uid"]


def owners_of(obj: Any) -> list[dict[str, Any]]:
    if isinstance(obj, dict):
        return obj["metadata"].get("ownerReferences") or []
    return [ref.to_dict() for ref in obj.metadata.owner_references or []]


def all_children(api: Api, namespace: str, fleet: str) -> dict[str, Any]:
    return {f"{kind} {fleet}-{suffix}": read_child(api, namespace, kind, f"{fleet}-{suffix}")
            for kind, suffix in CHILDREN}


def wait_children(api: Api, namespace: str, fleet: str, operator: Operator) -> dict[str, Any]:
    def present() -> dict[str, Any] | None:
        children = all_children(api, namespace, fleet)
        return children if all(children.values()) else None

    try:
        return wait_for(f"the children of {fleet}", present, 60)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\noperator log:\n{operator.logs()}") from None


def wait_status(api: Api, namespace: str, fleet: str, what: str, check: Any,
                operator: Operator, timeout: float = 60) -> dict[str, Any]:
    def matching() -> dict[str, Any] | None:
        status = get_fleet(api, namespace, fleet).get("status") or {}
        return status if check(status) else None

    try:
        return wait_for(f"fleet {fleet} status: {what}", matching, timeout)
    except TimeoutError as exc:
        status = get_fleet(api, namespace, fleet).get("status")
        raise AssertionError(f"{exc}\nstatus: {status}\noperator log:\n{operator.logs()}") \
            from None


def set_spark_state(api: Api, namespace: str, name: str, state: str) -> None:
    """Play the Spark operator: report the application's state."""
    api.custom.patch_namespaced_custom_object_status(
        *SPARK[:2], namespace, SPARK[2], name,
        # driverInfo is required by the Spark operator's CRD schema.
        {"status": {"applicationState": {"state": state}, "driverInfo": {}}})


def test_applying_a_fleet_creates_the_children(api: Api, operator: Operator,
                                               namespace: str) -> None:
    fleet = create_fleet(api, namespace, "demo", stores=25, storesPerPod=10)
    children = wait_children(api, namespace, "demo", operator)
    for ref, child in children.items():
        (owner,) = owners_of(child)
        assert owner["uid"] == fleet["metadata"]["uid"], ref
        assert owner["kind"] == "StoreFleet" and owner["controller"] is True, ref
    sts = children["StatefulSet demo-simulator"]
    assert sts.spec.replicas == 3
    env = {e.name: e.value for e in sts.spec.template.spec.containers[0].env}
    assert env["STOREFLEET_FLEET_NAME"] == "demo"
    assert json.loads(env["STOREFLEET_FLEET_SPEC"])["stores"] == 25
    insights = children["SparkApplication demo-insights"]
    assert insights["spec"]["restartPolicy"]["type"] == "Always"
    assert insights["spec"]["image"] == "storefleet/spark:test"
    assert "packages" not in insights["spec"].get("deps", {})
    config = children["ConfigMap demo-config"]
    assert "storesPerPod: 10" in config.data["fleet.yaml"]

    status = wait_status(api, namespace, "demo", "observedGeneration 1",
                         lambda s: s.get("observedGeneration") == 1, operator)
    assert status["pods"] == 3
    assert status["ready"] == "0/3"
    assert condition(status, "Reconciled")["status"] == "True"
    assert condition(status, "Ready")["status"] == "False"
    assert status["insights"]["state"] == "PENDING"
    # The API server filled in every default.
    stored = get_fleet(api, namespace, "demo")["spec"]
    assert stored["bonus"]["shortWindowMinutes"] == 10
    assert stored["simulation"]["cycleSeconds"] == 5

    def created_events() -> list[str]:
        reasons = [e.message for e in fleet_events(api, namespace, "demo")
                   if e.reason == "Created"]
        return reasons if len(reasons) >= 5 else []

    messages = wait_for("Created events on the fleet", created_events, 30)
    assert "Created StatefulSet demo-simulator" in messages


def test_scale_subresource_resizes_the_statefulset_and_status_follows(
        api: Api, operator: Operator, namespace: str) -> None:
    create_fleet(api, namespace, "shop", stores=10, storesPerPod=10)
    wait_children(api, namespace, "shop", operator)
    assert statefulset_replicas(api, namespace, "shop-simulator") == 1

    # What `kubectl scale storefleet/shop --replicas=35` sends.
    api.custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "shop", {"spec": {"replicas": 35}})
    assert get_fleet(api, namespace, "shop")["spec"]["stores"] == 35
    wait_for("StatefulSet scaled to 4 pods",
             lambda: statefulset_replicas(api, namespace, "shop-simulator") == 4, 60)

    set_ready_pods(api, namespace, "shop-simulator", 2)
    wait_status(api, namespace, "shop", "2 ready pods", lambda s: s.get("readyPods") == 2,
                operator)
    set_ready_pods(api, namespace, "shop-simulator", 4)
    status = wait_status(api, namespace, "shop", "35 stores running",
                         lambda s: s.get("stores") == 35, operator)
    assert status["ready"] == "4/4"
    assert condition(status, "SimulatorReady")["status"] == "True"
    scale = api.custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL,
                                                          "shop")
    assert scale["spec"]["replicas"] == 35
    assert scale["status"]["replicas"] == 35
    assert scale["status"]["selector"] == (
        "storefleet.io/fleet=shop,app.kubernetes.io/component=simulator")


@pytest.mark.parametrize(("name", "spec", "expected"), [
    ("bad-windows", {"bonus": {"shortWindowMinutes": 600, "longWindowHours": 2}},
     "bonus.longWindowHours must cover bonus.shortWindowMinutes"),
    ("negative", {"stores": -1}, "spec.stores: Invalid value: -1"),
    ("zero-cycle", {"simulation": {"cycleSeconds": 0}}, "spec.simulation.cycleSeconds"),
    ("bad-memory", {"spark": {"driver": {"memory": "lots"}}}, "spec.spark.driver.memory"),
    ("typo", {"storez": 3}, 'unknown field "spec.storez"'),
    ("a" * 41, {}, "metadata.name must be a lowercase DNS label of at most 40 characters"),
])
def test_an_invalid_fleet_is_refused_with_a_readable_message(
        api: Api, namespace: str, name: str, spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(ApiException) as refused:
        create_fleet(api, namespace, name, **spec)
    # 422 Invalid; 400 for an unknown field (strict decoding, as `kubectl apply` asks).
    assert refused.value.status in (400, 422), refused.value.body
    message = json.loads(refused.value.body)["message"]
    assert expected in message


def test_spark_application_state_appears_in_the_fleet_status(
        api: Api, operator: Operator, namespace: str) -> None:
    create_fleet(api, namespace, "jobs", stores=5)
    wait_children(api, namespace, "jobs", operator)
    set_spark_state(api, namespace, "jobs-insights", "RUNNING")
    status = wait_status(api, namespace, "jobs", "insights RUNNING",
                         lambda s: (s.get("insights") or {}).get("state") == "RUNNING",
                         operator)
    assert status["bonus"]["state"] == "PENDING"
    assert condition(status, "AnalyticsReady")["status"] == "False"

    set_spark_state(api, namespace, "jobs-bonus", "RUNNING")
    set_ready_pods(api, namespace, "jobs-simulator", 1)
    status = wait_status(api, namespace, "jobs", "Ready",
                         lambda s: condition(s, "Ready").get("status") == "True", operator)
    assert status["bonus"]["state"] == "RUNNING"

    set_spark_state(api, namespace, "jobs-bonus", "FAILED")
    status = wait_status(api, namespace, "jobs", "bonus FAILED",
                         lambda s: (s.get("bonus") or {}).get("state") == "FAILED", operator)
    assert "jobs-bonus: FAILED" in condition(status, "AnalyticsReady")["message"]


def test_bonus_threshold_change_reaches_the_bonus_job(
        api: Api, operator: Operator, namespace: str) -> None:
    create_fleet(api, namespace, "loyal", stores=2)
    wait_children(api, namespace, "loyal", operator)

    def bonus_env() -> dict[str, str]:
        app = spark_app(api, namespace, "loyal-bonus")
        (container,) = app["spec"]["driver"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert bonus_env()["STOREFLEET_BONUS_SHORT_WINDOW_THRESHOLD"] == "500.0"
    patch_fleet(api, namespace, "loyal", {"bonus": {"shortWindowThreshold": 750}})
    wait_for("the bonus SparkApplication to carry the new threshold",
             lambda: bonus_env()["STOREFLEET_BONUS_SHORT_WINDOW_THRESHOLD"] == "750.0", 60)
    config = api.core.read_namespaced_config_map("loyal-config", namespace)
    assert "shortWindowThreshold: 750.0" in config.data["fleet.yaml"]
    wait_status(api, namespace, "loyal", "observedGeneration 2",
                lambda s: s.get("observedGeneration") == 2, operator)
    messages = [e.message for e in fleet_events(api, namespace, "loyal")]
    assert "Updated SparkApplication loyal-bonus" in messages


def test_disabling_analytics_removes_the_spark_applications(
        api: Api, operator: Operator, namespace: str) -> None:
    create_fleet(api, namespace, "quiet", stores=2)
    wait_children(api, namespace, "quiet", operator)
    patch_fleet(api, namespace, "quiet", {"analytics": {"enabled": False}})
    wait_for("SparkApplications deleted",
             lambda: spark_app(api, namespace, "quiet-insights") is None
             and spark_app(api, namespace, "quiet-bonus") is None, 60)
    status = wait_status(api, namespace, "quiet", "analytics Disabled",
                         lambda s: (s.get("insights") or {}).get("state") == "Disabled",
                         operator)
    assert condition(status, "AnalyticsReady")["reason"] == "Disabled"


def test_deleting_a_fleet_removes_every_child(api: Api, operator: Operator,
                                              namespace: str) -> None:
    create_fleet(api, namespace, "gone", stores=3)
    wait_children(api, namespace, "gone", operator)
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")

    def all_gone() -> bool:
        remaining = [ref for ref, obj in all_children(api, namespace, "gone").items() if obj]
        return not remaining

    try:
        wait_for("the garbage collector to delete every child", all_gone, 90)
    except TimeoutError as exc:
        left = [ref for ref, obj in all_children(api, namespace, "gone").items() if obj]
        raise AssertionError(f"{exc}: still there: {left}") from None


def test_a_restarted_operator_resumes_fleets_without_duplicates(
        api: Api, operator: Operator, namespace: str) -> None:
    create_fleet(api, namespace, "steady", stores=10, storesPerPod=5)
    before = wait_children(api, namespace, "steady", operator)
    uids = {ref: uid_of(obj) for ref, obj in before.items()}

    operator.stop()
    try:
        # Changed while the operator is down: the restarted one must notice.
        patch_fleet(api, namespace, "steady", {"stores": 20})
    finally:
        operator.start()
    wait_for("StatefulSet resized after the restart",
             lambda: statefulset_replicas(api, namespace, "steady-simulator") == 4, 60)
    after = all_children(api, namespace, "steady")
    assert {ref: uid_of(obj) for ref, obj in after.items()} == uids
    selector = "storefleet.io/fleet=steady"
    counts = (
        len(api.core.list_namespaced_config_map(namespace, label_selector=selector).items),
        len(api.apps.list_namespaced_stateful_set(namespace, label_selector=selector).items),
        len(api.apps.list_namespaced_deployment(namespace, label_selector=selector).items),
        len(api.custom.list_namespaced_custom_object(
            *SPARK[:2], namespace, SPARK[2], label_selector=selector)["items"]),
    )
    assert counts == (1, 1, 1, 2)
    wait_status(api, namespace, "steady", "observedGeneration 2",
                lambda s: s.get("observedGeneration") == 2, operator)


def test_each_fleet_gets_its_own_ingest_token(api: Api, operator: Operator,
                                              namespace: str) -> None:
    fleet = create_fleet(api, namespace, "tokens", stores=2)
    children = wait_children(api, namespace, "tokens", operator)
    secret = children["Secret tokens-ingest-token"]
    (owner,) = owners_of(secret)
    assert owner["uid"] == fleet["metadata"]["uid"]
    token = base64.b64decode(secret.data["token"]).decode()
    # The key is the chart's generated one (the operator got it as the chart's Deployment says);
    # the token is recomputed here from its documented form sf1.<fleet>.<base64url HMAC>.
    key = operator.settings["STOREFLEET_INGEST_TOKEN_KEY"].encode()
    mac = base64.urlsafe_b64encode(hmac.new(key, b"fleet:tokens", hashlib.sha256).digest())
    assert token == f"sf1.tokens.{mac.rstrip(b'=').decode()}"
    other = create_fleet(api, namespace, "others", stores=1)
    others = wait_children(api, namespace, "others", operator)["Secret others-ingest-token"]
    assert base64.b64decode(others.data["token"]).decode().startswith("sf1.others.")
    assert owners_of(others)[0]["uid"] == other["metadata"]["uid"]

    sts = children["StatefulSet tokens-simulator"]
    (container,) = sts.spec.template.spec.containers
    ref = next(e for e in container.env if e.name == "STOREFLEET_INGEST_TOKEN")
    assert ref.value_from.secret_key_ref.name == "tokens-ingest-token"
    assert ref.value_from.secret_key_ref.key == "token"
    # The shared endpoints Secret carries no token, so the fleet's own is the one pods get.
    assert container.env_from[0].secret_ref.name == "storefleet-endpoints"


def test_spark_applications_keep_pod_templates_with_shared_volumes(
        api: Api, operator: Operator, namespace: str) -> None:
    create_fleet(api, namespace, "mounts", stores=2)
    children = wait_children(api, namespace, "mounts", operator)
    logs, checkpoints = (operator.settings["STOREFLEET_LOGS_CLAIM"],
                         operator.settings["STOREFLEET_CHECKPOINTS_CLAIM"])
    assert (logs, checkpoints) == ("storefleet-logs", "storefleet-checkpoints")
    sts = children["StatefulSet mounts-simulator"].spec.template.spec
    claims = {v.name: v.persistent_volume_claim.claim_name
              for v in sts.volumes if v.persistent_volume_claim}
    assert claims == {"logs": logs}
    assert {m.name: m.mount_path for m in sts.containers[0].volume_mounts}["logs"] == (
        "/var/lib/storefleet/logs")
    checkpoint_dirs = set()
    for job in ("insights", "bonus"):
        # What the API server stored: a field its CRD schema did not know would be gone.
        spec = children[f"SparkApplication mounts-{job}"]["spec"]
        assert spec["driver"]["coreRequest"] == "100m"
        assert spec["executor"]["coreRequest"] == "100m"
        for role in ("driver", "executor"):
            template = spec[role]["template"]["spec"]
            claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                      for v in template["volumes"] if "persistentVolumeClaim" in v}
            assert claims == {"logs": logs, "checkpoints": checkpoints}, (job, role)
            (container,) = template["containers"]
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["checkpoints"] == "/var/lib/storefleet/checkpoints"
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["STOREFLEET_EVENTS_TOPIC"] == "events"
            assert env[f"STOREFLEET_{job.upper()}_MAX_OFFSETS_PER_TRIGGER"] == "10000"
        checkpoint_dirs.add(env[f"STOREFLEET_{job.upper()}_CHECKPOINT_DIR"])
        if job == "insights":
            assert env["STOREFLEET_INSIGHTS_SCOPE"] == "fleet"
            assert env["STOREFLEET_FLEET_NAME"] == "mounts"
    assert len(checkpoint_dirs) == 2
