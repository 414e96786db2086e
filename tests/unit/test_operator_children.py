"""The pure reconciliation: a fleet -> its desired children, with no API server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
import yaml

from storefleet.fleet import load_manifest, parse_fleet
from storefleet.simulator.settings import load_fleet, store_range
from storefleet_operator.children import (
    desired_children,
    manifest_document,
    pod_store_range,
    simulator_pods,
)
from storefleet_operator.settings import OperatorSettings

UID = "0b5c9f5e-1111-2222-3333-444455556666"
KEY = "test-token-key-0123456789"
SETTINGS = OperatorSettings(ingest_token_key=KEY)


def container_of(app: dict, role: str) -> dict:
    """The Spark container of the driver's or executor's pod template."""
    (container,) = app["spec"][role]["template"]["spec"]["containers"]
    return container


def fleet(name: str = "demo", **spec: Any):
    return parse_fleet({"apiVersion": "storefleet.io/v1alpha1", "kind": "StoreFleet",
                        "metadata": {"name": name}, "spec": spec})


def by_kind(children: list[dict]) -> dict[tuple[str, str], dict]:
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def env_of(container_or_pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container_or_pod["env"]}


@pytest.mark.parametrize(("stores", "per_pod", "pods"),
                         [(0, 10, 0), (1, 10, 1), (10, 10, 1), (11, 10, 2), (50, 7, 8)])
def test_simulator_pods_is_ceil(stores: int, per_pod: int, pods: int) -> None:
    assert simulator_pods(stores, per_pod) == pods


def test_pod_store_ranges_cover_every_store_once() -> None:
    stores, per_pod = 23, 5
    covered = [s for i in range(simulator_pods(stores, per_pod))
               for s in pod_store_range(i, stores, per_pod)]
    assert covered == list(range(stores))
    assert pod_store_range(4, stores, per_pod) == range(20, 23)


def test_children_of_a_default_fleet() -> None:
    children = desired_children(fleet(stores=25, storesPerPod=10), namespace="shop",
                                owner_uid=UID, settings=SETTINGS)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("Secret", "demo-ingest-token"),
        ("ConfigMap", "demo-config"),
        ("StatefulSet", "demo-simulator"),
        ("Deployment", "demo-price-updater"),
        ("SparkApplication", "demo-insights"),
        ("SparkApplication", "demo-bonus"),
    ]
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "shop"
        assert meta["labels"]["storefleet.io/fleet"] == "demo"
        (owner,) = meta["ownerReferences"]
        assert owner == {"apiVersion": "storefleet.io/v1alpha1", "kind": "StoreFleet",
                         "name": "demo", "uid": UID, "controller": True,
                         "blockOwnerDeletion": True}
    sts = by_kind(children)[("StatefulSet", "demo-simulator")]
    assert sts["spec"]["replicas"] == 3
    pod = sts["spec"]["template"]
    assert set(sts["spec"]["selector"]["matchLabels"].items()) <= set(
        pod["metadata"]["labels"].items())
    (container,) = pod["spec"]["containers"]
    env = env_of(container)
    assert container["args"] == ["simulate"]
    assert env["STOREFLEET_FLEET_NAME"] == "demo"
    assert json.loads(env["STOREFLEET_FLEET_SPEC"])["storesPerPod"] == 10
    index = next(e for e in container["env"] if e["name"] == "STOREFLEET_POD_ORDINAL")
    assert "apps.kubernetes.io/pod-index" in index["valueFrom"]["fieldRef"]["fieldPath"]
    assert pod["spec"]["enableServiceLinks"] is False


def test_config_map_holds_a_manifest_the_components_can_load(tmp_path) -> None:
    original = fleet(stores=7, bonus={"shortWindowThreshold": 42})
    (config,) = [c for c in desired_children(original, namespace="ns", owner_uid=UID,
                                             settings=SETTINGS) if c["kind"] == "ConfigMap"]
    path = tmp_path / "fleet.yaml"
    path.write_text(config["data"]["fleet.yaml"])
    (loaded,) = load_manifest(path)
    assert loaded == original
    assert yaml.safe_load(config["data"]["fleet.yaml"]) == manifest_document(original)


def test_spark_applications() -> None:
    settings = OperatorSettings(spark_image="reg/spark:1", spark_service_account="spark-sa",
                                spark_jars=("local:///opt/spark/jars/extra.jar",),
                                ingest_token_key=KEY)
    children = by_kind(desired_children(
        fleet(analytics={"shufflePartitions": 8}, spark={"executor": {"instances": 3}}),
        namespace="ns", owner_uid=UID, settings=settings))
    for job in ("insights", "bonus"):
        app = children[("SparkApplication", f"demo-{job}")]
        assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
        spec = app["spec"]
        assert spec["restartPolicy"]["type"] == "Always"
        assert spec["image"] == "reg/spark:1"
        assert spec["arguments"][0] == job
        assert spec["sparkConf"]["spark.sql.shuffle.partitions"] == "8"
        assert spec["executor"]["instances"] == 3
        assert spec["driver"]["serviceAccount"] == "spark-sa"
        # Connector jars are in the image; nothing is resolved by spark-submit.
        assert "packages" not in spec.get("deps", {})
        assert all(j.startswith("local://") for j in spec["deps"]["jars"])


def test_bonus_thresholds_are_in_the_bonus_application_spec() -> None:
    def bonus_env(**bonus: Any) -> dict[str, str]:
        children = by_kind(desired_children(fleet(bonus=bonus), namespace="ns", owner_uid=UID,
                                            settings=SETTINGS))
        return env_of(container_of(children[("SparkApplication", "demo-bonus")], "driver"))

    before, after = bonus_env(), bonus_env(shortWindowThreshold=750)
    assert before["STOREFLEET_BONUS_SHORT_WINDOW_THRESHOLD"] == "500.0"
    assert after["STOREFLEET_BONUS_SHORT_WINDOW_THRESHOLD"] == "750.0"


def test_pods_get_a_fleet_spec_the_simulator_reads() -> None:
    original = fleet(stores=23, storesPerPod=5, simulation={"usersPerCycle": 7})
    sts = by_kind(desired_children(original, namespace="ns", owner_uid=UID, settings=SETTINGS))[
        ("StatefulSet", "demo-simulator")]
    env = env_of(sts["spec"]["template"]["spec"]["containers"][0])
    environ = {k: v for k, v in env.items() if v is not None} | {"STOREFLEET_POD_ORDINAL": "4"}
    loaded = load_fleet(None, None, environ)
    assert loaded.spec.simulation == original.spec.simulation
    assert (loaded.spec.stores, loaded.spec.stores_per_pod) == (23, 5)
    assert store_range(loaded, None, None, environ) == (20, 23)


def test_only_relevant_changes_restart_pods() -> None:
    def templates(**spec: Any) -> tuple[dict, dict]:
        children = by_kind(desired_children(fleet(**spec), namespace="ns", owner_uid=UID,
                                            settings=SETTINGS))
        return (children[("StatefulSet", "demo-simulator")]["spec"]["template"],
                children[("Deployment", "demo-price-updater")]["spec"]["template"])

    base = templates(stores=10)
    bonus_changed = templates(stores=10, bonus={"shortWindowThreshold": 1})
    assert bonus_changed == base
    prices_changed = templates(stores=10, priceUpdater={"productsPerRun": 3})
    assert prices_changed[0] == base[0] and prices_changed[1] != base[1]


def test_analytics_disabled_means_no_spark_applications() -> None:
    children = desired_children(fleet(analytics={"enabled": False}), namespace="ns",
                                owner_uid=UID, settings=SETTINGS)
    assert "SparkApplication" not in {c["kind"] for c in children}


def test_zero_stores_keeps_an_empty_statefulset() -> None:
    children = by_kind(desired_children(fleet(stores=0), namespace="ns", owner_uid=UID,
                                        settings=SETTINGS))
    assert children[("StatefulSet", "demo-simulator")]["spec"]["replicas"] == 0


def test_desired_children_is_deterministic() -> None:
    one = desired_children(fleet(stores=12), namespace="ns", owner_uid=UID, settings=SETTINGS)
    two = desired_children(fleet(stores=12), namespace="ns", owner_uid=UID, settings=SETTINGS)
    assert one == two


def test_each_fleet_gets_its_own_ingest_token_secret() -> None:
    children = by_kind(desired_children(fleet("shop"), namespace="ns", owner_uid=UID,
                                        settings=SETTINGS))
    secret = children[("Secret", "shop-ingest-token")]
    token = base64.b64decode(secret["data"]["token"]).decode()
    # Recomputed here from the token format of storefleet.events.tokens: sf1.<fleet>.<mac>.
    mac = base64.urlsafe_b64encode(
        hmac.new(KEY.encode(), b"fleet:shop", hashlib.sha256).digest()).rstrip(b"=").decode()
    assert token == f"sf1.shop.{mac}"
    (owner,) = secret["metadata"]["ownerReferences"]
    assert owner["kind"] == "StoreFleet" and owner["uid"] == UID
    sts = children[("StatefulSet", "shop-simulator")]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    ref = next(e for e in container["env"] if e["name"] == "STOREFLEET_INGEST_TOKEN")
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "shop-ingest-token", "key": "token"}


def test_spark_pods_get_env_and_volumes_through_pod_templates() -> None:
    settings = OperatorSettings(ingest_token_key=KEY, logs_claim="sf-logs",
                                checkpoints_claim="sf-checkpoints", events_topic="shop-events",
                                insights_max_offsets_per_trigger=5000,
                                bonus_max_offsets_per_trigger=2000)
    children = by_kind(desired_children(fleet("shop"), namespace="ns", owner_uid=UID,
                                        settings=settings))
    checkpoint_dirs = set()
    for job, max_offsets in (("insights", "5000"), ("bonus", "2000")):
        app = children[("SparkApplication", f"shop-{job}")]
        for role, name in (("driver", "spark-kubernetes-driver"),
                           ("executor", "spark-kubernetes-executor")):
            template = app["spec"][role]["template"]
            container = container_of(app, role)
            assert container["name"] == name
            claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
                      for v in template["spec"]["volumes"]}
            assert claims["logs"] == "sf-logs"
            assert claims["checkpoints"] == "sf-checkpoints"
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["logs"] == "/var/lib/storefleet/logs"
            assert mounts["checkpoints"] == "/var/lib/storefleet/checkpoints"
            env = env_of(container)
            assert env["STOREFLEET_EVENTS_TOPIC"] == "shop-events"
            assert env[f"STOREFLEET_{job.upper()}_MAX_OFFSETS_PER_TRIGGER"] == max_offsets
            assert container["envFrom"] == [
                {"secretRef": {"name": "storefleet-endpoints", "optional": True}}]
        env = env_of(container_of(app, "driver"))
        checkpoint_dirs.add(env[f"STOREFLEET_{job.upper()}_CHECKPOINT_DIR"])
        # Without the Spark operator's webhook these fields would be ignored: none are used.
        for role in ("driver", "executor"):
            assert not {"env", "envFrom", "volumeMounts"} & set(app["spec"][role])
        assert "volumes" not in app["spec"]
        # Fractional CPU requests so two jobs fit a small node; a whole core as the limit.
        assert app["spec"]["driver"]["coreRequest"] == "100m"
        assert app["spec"]["executor"]["coreLimit"] == "1"
    assert checkpoint_dirs == {"/var/lib/storefleet/checkpoints/shop-insights",
                               "/var/lib/storefleet/checkpoints/shop-bonus"}
    insights = env_of(container_of(children[("SparkApplication", "shop-insights")], "driver"))
    assert insights["STOREFLEET_INSIGHTS_SCOPE"] == "fleet"
    assert insights["STOREFLEET_FLEET_NAME"] == "shop"
    sts = children[("StatefulSet", "shop-simulator")]
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
              for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert claims["logs"] == "sf-logs"
