"""The pure reconciliation: a StoreFleet -> the Kubernetes objects it should own.

`desired_children(fleet, namespace=..., owner_uid=..., settings=...)` returns plain manifests
(dicts) with no I/O, so it is tested on its own (tests/unit/test_operator_children.py) and
`apply.py` sends them with server-side apply. Every child carries the fleet's labels and a
controller owner reference, so deleting the fleet lets the garbage collector remove it.

Every pod learns its fleet from STOREFLEET_FLEET_NAME and STOREFLEET_FLEET_SPEC (the FleetSpec
as camelCase JSON, defaults filled in), the contract of `storefleet simulate` and
`storefleet price-updater`; endpoints come from the endpoints Secret (envFrom).

Children of fleet `demo`:
- ConfigMap `demo-config`: the fleet manifest with every default filled in (`fleet.yaml`),
  mounted by every pod at /etc/storefleet/fleet.yaml.
- StatefulSet `demo-simulator`: ceil(stores / storesPerPod) pods of `storefleet simulate`; pod N
  (STOREFLEET_POD_ORDINAL, from the pod-index label) drives stores
  [N * storesPerPod, min(stores, (N + 1) * storesPerPod)). Its pods get only the spec's
  stores/storesPerPod/simulation, so a bonus or price change leaves them running.
- Deployment `demo-price-updater`: one `storefleet price-updater`.
- Secret `demo-ingest-token`: the fleet's own ingest token (key `token`, derived from the
  operator's STOREFLEET_INGEST_TOKEN_KEY by storefleet.events.tokens.fleet_token); simulator pods
  read STOREFLEET_INGEST_TOKEN from it, so a leaked token posts only for this fleet's stores.
- SparkApplications `demo-insights` (STOREFLEET_INSIGHTS_SCOPE=fleet: the fleet's stores and
  `ALL:demo`) and `demo-bonus` (sparkoperator.k8s.io/v1beta2, restartPolicy Always,
  `storefleet <job> run`) when analytics is enabled. The bonus thresholds and coupon policy are
  in the bonus application's pod env, so a change edits its spec and the Spark operator
  resubmits the job with the new values (its checkpoint keeps the windows' state).

Spark pods get their env, volumes and security context through the SparkApplication's
`driver.template` / `executor.template` (Spark pod templates, which the Spark operator v2 hands
to spark-submit), not through `driver.env`/`volumeMounts`: those need the Spark operator's
mutating webhook, which the chart does not install. So the logs and checkpoints
PersistentVolumeClaims reach the driver AND the executors (insight 9 reads logs on executors),
and a restarted driver resumes from its checkpoint.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import yaml

from storefleet.events.tokens import fleet_token
from storefleet.fleet import API_GROUP, API_VERSION, KIND, Fleet
from storefleet_operator.settings import OperatorSettings

FLEET_API_VERSION = f"{API_GROUP}/{API_VERSION}"
SPARK_API_VERSION = "sparkoperator.k8s.io/v1beta2"
FLEET_LABEL = "storefleet.io/fleet"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = "storefleet-operator"
CONFIG_MOUNT = "/etc/storefleet"
FLEET_FILE = f"{CONFIG_MOUNT}/fleet.yaml"
LOGS_DIR = "/var/lib/storefleet/logs"
CHECKPOINTS_DIR = "/var/lib/storefleet/checkpoints"
SPARK_MASTER = "k8s://https://kubernetes.default.svc"
# What of the spec each component's pods get (a change elsewhere leaves them running).
SIMULATOR_SECTIONS = ("stores", "storesPerPod", "simulation")
PRICE_UPDATER_SECTIONS = ("stores", "storesPerPod", "priceUpdater")

# Spark's container names in its pod templates (spark-operator v2 pkg/common/spark.go).
DRIVER_CONTAINER = "spark-kubernetes-driver"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"

# Kinds the operator owns, as (apiVersion, kind, plural), in apply order.
CHILD_KINDS: tuple[tuple[str, str, str], ...] = (
    ("v1", "Secret", "secrets"),
    ("v1", "ConfigMap", "configmaps"),
    ("apps/v1", "StatefulSet", "statefulsets"),
    ("apps/v1", "Deployment", "deployments"),
    (SPARK_API_VERSION, "SparkApplication", "sparkapplications"),
)


def simulator_pods(stores: int, stores_per_pod: int) -> int:
    """Pods needed to run `stores` stores, `stores_per_pod` each."""
    return math.ceil(stores / stores_per_pod) if stores > 0 else 0


def pod_store_range(pod_index: int, stores: int, stores_per_pod: int) -> range:
    """Store positions the simulator pod with this ordinal drives."""
    start = pod_index * stores_per_pod
    return range(min(start, stores), min(start + stores_per_pod, stores))


def child_names(fleet_name: str) -> dict[str, str]:
    return {
        "config": f"{fleet_name}-config",
        "ingest-token": f"{fleet_name}-ingest-token",
        "simulator": f"{fleet_name}-simulator",
        "price-updater": f"{fleet_name}-price-updater",
        "insights": f"{fleet_name}-insights",
        "bonus": f"{fleet_name}-bonus",
    }


def fleet_selector(fleet_name: str) -> str:
    return f"{FLEET_LABEL}={fleet_name},app.kubernetes.io/managed-by={MANAGED_BY}"


def simulator_selector(fleet_name: str) -> str:
    return f"{FLEET_LABEL}={fleet_name},{COMPONENT_LABEL}=simulator"


def spec_document(fleet: Fleet) -> dict[str, Any]:
    """The fleet's spec with every default filled in, by its camelCase names."""
    return fleet.spec.model_dump(mode="json", by_alias=True)


def manifest_document(fleet: Fleet) -> dict[str, Any]:
    """A complete StoreFleet manifest that `storefleet.fleet.load_manifest` reads back."""
    return {
        "apiVersion": FLEET_API_VERSION,
        "kind": KIND,
        "metadata": {"name": fleet.name},
        "spec": spec_document(fleet),
    }


def _labels(fleet: Fleet, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "storefleet",
        "app.kubernetes.io/instance": fleet.name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        FLEET_LABEL: fleet.name,
    }


def _metadata(fleet: Fleet, name: str, namespace: str, component: str, owner_uid: str) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "labels": _labels(fleet, component),
        "ownerReferences": [
            {
                "apiVersion": FLEET_API_VERSION,
                "kind": KIND,
                "name": fleet.name,
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def _spec_json(fleet: Fleet, sections: tuple[str, ...] | None = None) -> str:
    spec = spec_document(fleet)
    if sections is not None:
        spec = {key: value for key, value in spec.items() if key in sections}
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _common_env(fleet: Fleet, sections: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """How every component learns its fleet: STOREFLEET_FLEET_NAME and STOREFLEET_FLEET_SPEC
    (the FleetSpec as camelCase JSON; only `sections` of it, where given, so a change elsewhere
    does not restart the pods)."""
    return [
        {"name": "STOREFLEET_FLEET_NAME", "value": fleet.name},
        {"name": "STOREFLEET_FLEET_SPEC", "value": _spec_json(fleet, sections)},
        {"name": "STOREFLEET_FLEET_FILE", "value": FLEET_FILE},
        {"name": "STOREFLEET_LOGS_DIR", "value": LOGS_DIR},
    ]


def _env_from(settings: OperatorSettings) -> list[dict[str, Any]]:
    return [{"secretRef": {"name": settings.endpoints_secret, "optional": True}}]


def _volumes(fleet: Fleet, settings: OperatorSettings) -> list[dict[str, Any]]:
    logs: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": settings.logs_claim}}
        if settings.logs_claim
        else {"emptyDir": {}}
    )
    return [
        {"name": "fleet-config", "configMap": {"name": child_names(fleet.name)["config"]}},
        {"name": "logs", **logs},
        {"name": "tmp", "emptyDir": {}},  # the root filesystem is read-only
    ]


def _spark_volumes(fleet: Fleet, settings: OperatorSettings) -> list[dict[str, Any]]:
    checkpoints: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": settings.checkpoints_claim}}
        if settings.checkpoints_claim
        else {"emptyDir": {}}
    )
    return [*_volumes(fleet, settings), {"name": "checkpoints", **checkpoints}]


_MOUNTS = [
    {"name": "fleet-config", "mountPath": CONFIG_MOUNT, "readOnly": True},
    {"name": "logs", "mountPath": LOGS_DIR},
    {"name": "tmp", "mountPath": "/tmp"},
]

_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001}
# The Spark image runs as its own non-root user (apache/spark: uid 185); only the group is set,
# so files the simulators (uid 10001) write on the shared volumes stay readable.
_SPARK_POD_SECURITY = {"runAsNonRoot": True, "fsGroup": 10001}
_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def config_map(fleet: Fleet, namespace: str, owner_uid: str) -> dict[str, Any]:
    names = child_names(fleet.name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(fleet, names["config"], namespace, "config", owner_uid),
        "data": {"fleet.yaml": yaml.safe_dump(manifest_document(fleet), sort_keys=False)},
    }


def simulator_statefulset(
    fleet: Fleet, namespace: str, owner_uid: str, settings: OperatorSettings
) -> dict[str, Any]:
    spec = fleet.spec
    names = child_names(fleet.name)
    labels = _labels(fleet, "simulator")
    selector = {FLEET_LABEL: fleet.name, COMPONENT_LABEL: "simulator"}
    env = [
        # A bonus, price or analytics change does not restart simulators; a store count does
        # (rolling: each pod resumes its stores, ids being stable).
        *_common_env(fleet, SIMULATOR_SECTIONS),
        {
            "name": "STOREFLEET_POD_ORDINAL",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
            },
        },
        # The fleet's own token (explicit env wins over the endpoints Secret's envFrom).
        {
            "name": "STOREFLEET_INGEST_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": names["ingest-token"], "key": "token"}},
        },
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(fleet, names["simulator"], namespace, "simulator", owner_uid),
        "spec": {
            "replicas": simulator_pods(spec.stores, spec.stores_per_pod),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "enableServiceLinks": False,
                    "securityContext": _POD_SECURITY,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "simulator",
                            "image": settings.image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "args": ["simulate"],
                            "env": env,
                            "envFrom": _env_from(settings),
                            "volumeMounts": _MOUNTS,
                            "securityContext": _CONTAINER_SECURITY,
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                        }
                    ],
                    "volumes": _volumes(fleet, settings),
                },
            },
        },
    }


def price_updater_deployment(
    fleet: Fleet, namespace: str, owner_uid: str, settings: OperatorSettings
) -> dict[str, Any]:
    names = child_names(fleet.name)
    labels = _labels(fleet, "price-updater")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(fleet, names["price-updater"], namespace, "price-updater",
                              owner_uid),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {FLEET_LABEL: fleet.name,
                                         COMPONENT_LABEL: "price-updater"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "enableServiceLinks": False,
                    "securityContext": _POD_SECURITY,
                    "containers": [
                        {
                            "name": "price-updater",
                            "image": settings.image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "args": ["price-updater"],
                            "env": _common_env(fleet, PRICE_UPDATER_SECTIONS),
                            "envFrom": _env_from(settings),
                            "volumeMounts": _MOUNTS,
                            "securityContext": _CONTAINER_SECURITY,
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                        }
                    ],
                    "volumes": _volumes(fleet, settings),
                },
            },
        },
    }


def _job_env(fleet: Fleet, job: str, settings: OperatorSettings) -> list[dict[str, Any]]:
    spec = fleet.spec
    prefix = f"STOREFLEET_{job.upper()}_"
    max_offsets = (settings.insights_max_offsets_per_trigger if job == "insights"
                   else settings.bonus_max_offsets_per_trigger)
    env = [
        *_common_env(fleet),
        # spark-submit already chose the cluster; the job's session must not force local[*].
        {"name": "STOREFLEET_SPARK_MASTER", "value": SPARK_MASTER},
        {"name": "STOREFLEET_EVENTS_TOPIC", "value": settings.events_topic},
        # One folder per application: two jobs (or fleets) never share a checkpoint.
        {"name": f"{prefix}CHECKPOINT_DIR",
         "value": f"{CHECKPOINTS_DIR}/{child_names(fleet.name)[job]}"},
        {"name": f"{prefix}TRIGGER_SECONDS", "value": str(spec.analytics.trigger_seconds)},
        {"name": f"{prefix}SHUFFLE_PARTITIONS", "value": str(spec.analytics.shuffle_partitions)},
        {"name": f"{prefix}MAX_OFFSETS_PER_TRIGGER", "value": str(max_offsets)},
    ]
    if job == "insights":
        env += [
            # This fleet's stores and its `ALL:<fleet>`; the platform-wide `ALL` is computed
            # once, by the chart's insights-platform application.
            {"name": "STOREFLEET_INSIGHTS_SCOPE", "value": "fleet"},
            # The bonus job has no Spark watermark: its windows live in PostgreSQL.
            {"name": f"{prefix}WATERMARK_SECONDS",
             "value": str(spec.analytics.watermark_seconds)},
        ]
    if job == "bonus":
        bonus, coupons = spec.bonus, spec.coupons
        env += [
            {"name": "STOREFLEET_BONUS_SHORT_WINDOW_MINUTES",
             "value": str(bonus.short_window_minutes)},
            {"name": "STOREFLEET_BONUS_SHORT_WINDOW_THRESHOLD",
             "value": str(bonus.short_window_threshold)},
            {"name": "STOREFLEET_BONUS_LONG_WINDOW_HOURS", "value": str(bonus.long_window_hours)},
            {"name": "STOREFLEET_BONUS_LONG_WINDOW_THRESHOLD",
             "value": str(bonus.long_window_threshold)},
            {"name": "STOREFLEET_COUPON_DISCOUNT_PERCENT", "value": str(coupons.discount_percent)},
            {"name": "STOREFLEET_COUPON_COOLDOWN_MINUTES", "value": str(coupons.cooldown_minutes)},
        ]
    return env


def spark_pod_template(container: str, labels: dict[str, str], env: list[dict[str, Any]],
                       volumes: list[dict[str, Any]], settings: OperatorSettings
                       ) -> dict[str, Any]:
    """A Spark pod template (driver or executor): what spark-submit starts the pod from.

    `container` is Spark's container name (DRIVER_CONTAINER / EXECUTOR_CONTAINER); Spark adds
    its own env, ports and resources to that container and keeps ours."""
    return {
        "metadata": {"labels": labels},
        "spec": {
            # A Service named like a setting would inject <NAME>_PORT variables.
            "enableServiceLinks": False,
            "securityContext": _SPARK_POD_SECURITY,
            "containers": [{
                "name": container,
                "env": env,
                "envFrom": _env_from(settings),
                "volumeMounts": [*_MOUNTS,
                                 {"name": "checkpoints", "mountPath": CHECKPOINTS_DIR}],
                "securityContext": _CONTAINER_SECURITY | {"readOnlyRootFilesystem": False},
            }],
            "volumes": volumes,
        },
    }


def spark_application(
    fleet: Fleet, job: str, namespace: str, owner_uid: str, settings: OperatorSettings
) -> dict[str, Any]:
    """The SparkApplication running `storefleet <job>` (job: insights or bonus)."""
    spec = fleet.spec
    name = child_names(fleet.name)[job]
    pod_labels = {**_labels(fleet, job), "storefleet.io/spark-app": name}
    env = _job_env(fleet, job, settings)
    volumes = _spark_volumes(fleet, settings)
    application: dict[str, Any] = {
        "apiVersion": SPARK_API_VERSION,
        "kind": "SparkApplication",
        "metadata": _metadata(fleet, name, namespace, job, owner_uid),
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": settings.spark_image,
            "imagePullPolicy": settings.image_pull_policy,
            "mainApplicationFile": settings.spark_main_file,
            "arguments": [job, "run"],
            "sparkVersion": settings.spark_version,
            "sparkConf": {
                # Frozen into the checkpoint at the first run (DESIGN.md §9).
                "spark.sql.shuffle.partitions": str(spec.analytics.shuffle_partitions),
                "spark.kubernetes.executor.deleteOnTermination": "true",
            },
            "restartPolicy": {
                "type": "Always",
                "onFailureRetryInterval": 10,
                "onSubmissionFailureRetryInterval": 20,
            },
            "driver": {
                "cores": spec.spark.driver.cores,
                "coreRequest": settings.spark_driver_request_cores,
                "coreLimit": settings.spark_driver_limit_cores,
                "memory": spec.spark.driver.memory,
                "serviceAccount": settings.spark_service_account,
                "labels": pod_labels,
                "template": spark_pod_template(DRIVER_CONTAINER, pod_labels, env, volumes,
                                               settings),
            },
            "executor": {
                "cores": spec.spark.executor.cores,
                "coreRequest": settings.spark_executor_request_cores,
                "coreLimit": settings.spark_executor_limit_cores,
                "memory": spec.spark.executor.memory,
                "instances": spec.spark.executor.instances,
                "labels": pod_labels,
                "template": spark_pod_template(EXECUTOR_CONTAINER, pod_labels, env, volumes,
                                               settings),
            },
        },
    }
    if settings.spark_jars:
        application["spec"]["deps"] = {"jars": list(settings.spark_jars)}
    return application


def ingest_token_secret(fleet: Fleet, namespace: str, owner_uid: str,
                        settings: OperatorSettings) -> dict[str, Any]:
    """Secret `<fleet>-ingest-token` with key `token`: the fleet's ingest token, derived from
    the operator's token key (the webhook checks it with the same key)."""
    names = child_names(fleet.name)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(fleet, names["ingest-token"], namespace, "ingest-token",
                              owner_uid),
        "type": "Opaque",
        # `data`, not stringData: server-side apply then owns exactly this field.
        "data": {"token": base64.b64encode(
            fleet_token(settings.token_key, fleet.name).encode()).decode()},
    }


def desired_children(
    fleet: Fleet, *, namespace: str, owner_uid: str, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """Every object the fleet should own, in apply order (configuration first)."""
    children = [
        ingest_token_secret(fleet, namespace, owner_uid, settings),
        config_map(fleet, namespace, owner_uid),
        simulator_statefulset(fleet, namespace, owner_uid, settings),
        price_updater_deployment(fleet, namespace, owner_uid, settings),
    ]
    if fleet.spec.analytics.enabled:
        children += [
            spark_application(fleet, job, namespace, owner_uid, settings)
            for job in ("insights", "bonus")
        ]
    return children
