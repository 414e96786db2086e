"""kopf handlers: every @kopf decorator of the operator, each handing off to plain functions.

- A StoreFleet created, changed (including `kubectl scale`, which edits spec.stores) or found at
  operator start (resume) -> `reconcile`: validate, apply the desired children, write status,
  post Events for what changed.
- A StatefulSet or SparkApplication of a fleet changed -> `refresh_status` of that fleet, so
  ready pods and Spark job states show up in the fleet's status.
- Deletion needs no handler: children carry owner references and the garbage collector removes
  them (no finalizer, so a fleet is never stuck when the operator is down).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from storefleet.fleet import API_GROUP, API_VERSION, ManifestError, parse_fleet
from storefleet_operator.apply import (
    ApiError,
    Kube,
    apply_children,
    load_client_config,
    object_path,
    observe_children,
)
from storefleet_operator.children import FLEET_LABEL, MANAGED_BY, desired_children
from storefleet_operator.settings import OperatorSettings
from storefleet_operator.status import fleet_status, status_changed

PLURAL = "storefleets"
PREFIX = "operator.storefleet.io"
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY, FLEET_LABEL: kopf.PRESENT}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger,
              **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING  # our own Events are posted explicitly
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    memo.kube = Kube(load_client_config())
    memo.settings = OperatorSettings.from_env()
    logger.info("StoreFleet operator started (images %s, %s)", memo.settings.image,
                memo.settings.spark_image)


def _fleet_path(namespace: str, name: str) -> str:
    return object_path(f"{API_GROUP}/{API_VERSION}", PLURAL, namespace, name)


def _parse(body: kopf.Body) -> Any:
    try:
        return parse_fleet(dict(body), source=f"StoreFleet {body.metadata.namespace}/"
                                               f"{body.metadata.name}")
    except ManifestError as exc:
        raise kopf.PermanentError(str(exc)) from None


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL)
def reconcile(body: kopf.Body, meta: kopf.Meta, namespace: str, uid: str,
              memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    kube: Kube = memo.kube
    path = _fleet_path(namespace, meta["name"])
    try:
        fleet = _parse(body)
    except kopf.PermanentError as exc:
        kopf.event(body, type="Warning", reason="InvalidSpec", message=str(exc))
        kube.patch_status(path, {"conditions": [{
            "type": "Reconciled", "status": "False", "reason": "InvalidSpec",
            "message": str(exc)}]})
        raise
    children = desired_children(fleet, namespace=namespace, owner_uid=uid,
                                settings=memo.settings)
    error = None
    result = None
    try:
        result = apply_children(kube, fleet.name, namespace, uid, children)
    except ApiError as exc:
        error = str(exc)
    generation = meta.get("generation")

    def new_status(current: dict[str, Any]) -> dict[str, Any] | None:
        if current["metadata"].get("generation") != generation:
            return None  # the spec changed meanwhile: the next reconcile writes status
        observed = observe_children(kube, fleet.name, namespace)
        return fleet_status(
            fleet,
            statefulset=observed.statefulset,
            spark_apps=observed.spark_apps,
            previous=current.get("status"),
            observed_generation=None if error else generation,
            reconcile_error=error,
            missing_apis=result.missing_apis if result else None,
        )

    kube.update_status(path, new_status)
    if error:
        kopf.event(body, type="Warning", reason="ApplyFailed", message=error)
        raise kopf.TemporaryError(f"applying children failed: {error}", delay=10)
    assert result is not None
    for ref in result.created:
        kopf.event(body, type="Normal", reason="Created", message=f"Created {ref}")
    for ref in result.updated:
        kopf.event(body, type="Normal", reason="Updated", message=f"Updated {ref}")
    for ref in result.deleted:
        kopf.event(body, type="Normal", reason="Deleted", message=f"Deleted {ref}")
    logger.info("fleet %s/%s reconciled: %d created, %d updated, %d deleted", namespace,
                fleet.name, len(result.created), len(result.updated), len(result.deleted))
    if result.missing_apis:
        missing = f"not served by this cluster: {', '.join(result.missing_apis)}"
        kopf.event(body, type="Warning", reason="ApiMissing", message=missing)
        # Retried, so installing the Spark operator later heals the fleet by itself.
        raise kopf.TemporaryError(missing, delay=60)


def refresh_status(kube: Kube, namespace: str, fleet_name: str) -> None:
    """Recompute a fleet's status from its children; write it only if it changed."""

    def new_status(body: dict[str, Any]) -> dict[str, Any] | None:
        if body["metadata"].get("deletionTimestamp"):
            return None
        try:
            fleet = parse_fleet(body)
        except ManifestError:
            return None  # reconcile reports it
        observed = observe_children(kube, fleet_name, namespace)
        previous = body.get("status") or {}
        status = fleet_status(
            fleet,
            statefulset=observed.statefulset,
            spark_apps=observed.spark_apps,
            previous=previous,
            observed_generation=None,
        )
        return status if status_changed(previous, status) else None

    kube.update_status(_fleet_path(namespace, fleet_name), new_status)


@kopf.on.event("apps", "v1", "statefulsets", labels=CHILD_LABELS)
@kopf.on.event("sparkoperator.k8s.io", "v1beta2", "sparkapplications", labels=CHILD_LABELS)
def child_changed(type: str | None, labels: kopf.Labels, namespace: str, memo: kopf.Memo,
                  **_: Any) -> None:
    if type is None:  # the initial listing: resume handles those fleets
        return
    refresh_status(memo.kube, namespace, labels[FLEET_LABEL])
