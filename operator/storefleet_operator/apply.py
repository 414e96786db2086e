"""Sending desired children to the API server, reading observed ones back.

`Kube` is a small REST helper over the official client's connection (kubeconfig or in-cluster
service account): plain paths, JSON in and out, no discovery, so a CRD installed after the
operator started (SparkApplication) is usable at once. Children are written with server-side
apply (field manager `storefleet-operator`, conflicts forced: the fleet is the source of truth),
which is idempotent: an operator restarted any number of times never duplicates a child.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storefleet_operator.children import CHILD_KINDS, FLEET_API_VERSION, fleet_selector

# Kinds the operator may write but never list or read: its RBAC grants only create and patch on
# Secrets, so it cannot read the other Secrets of a namespace. Such a child has a fixed name
# and is removed with its fleet by the garbage collector (owner reference).
WRITE_ONLY_KINDS = frozenset({"Secret"})

FIELD_MANAGER = "storefleet-operator"
log = logging.getLogger(__name__)

_PLURALS = {(api, kind): plural for api, kind, plural in CHILD_KINDS}
_PLURALS[(FLEET_API_VERSION, "StoreFleet")] = "storefleets"


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def object_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def path_of(obj: dict[str, Any]) -> str:
    plural = _PLURALS[(obj["apiVersion"], obj["kind"])]
    return object_path(obj["apiVersion"], plural, obj["metadata"]["namespace"],
                       obj["metadata"]["name"])


def load_client_config() -> Any:
    """An ApiClient from the in-cluster service account, else the kubeconfig (KUBECONFIG)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Kube:
    """JSON requests to the API server through a kubernetes.client.ApiClient."""

    def __init__(self, api_client: Any, timeout: float = 30.0):
        self.api = api_client
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        method_, url, headers, body_, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method_, url, header_params=headers, body=body_,
                                     _request_timeout=self.timeout)
        data = response.read()
        payload = json.loads(data) if data else None
        if response.status >= 400:
            message = payload.get("message", "") if isinstance(payload, dict) else str(data)
            reason = payload.get("reason", "") if isinstance(payload, dict) else ""
            raise ApiError(response.status, message, reason)
        return response.status, payload

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path)[1]
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path: str, label_selector: str) -> list[dict[str, Any]] | None:
        """Items matching the selector, or None when the resource type is not served."""
        try:
            return self.request("GET", path, query={"labelSelector": label_selector})[1]["items"]
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Server-side apply; returns (HTTP status, object): 201 means created."""
        return self.request(
            "PATCH",
            path_of(obj),
            obj,
            content_type="application/apply-patch+yaml",
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    def delete(self, path: str) -> bool:
        try:
            self.request("DELETE", path, {"propagationPolicy": "Background"})
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise

    def patch_status(self, path: str, status: dict[str, Any],
                     resource_version: str | None = None) -> dict[str, Any]:
        """Merge-patch the status subresource; with `resource_version`, only if unchanged
        since (409 Conflict otherwise)."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request("PATCH", f"{path}/status", body,
                            content_type="application/merge-patch+json")[1]

    def update_status(self, path: str,
                      compute: Callable[[dict[str, Any]], dict[str, Any] | None],
                      attempts: int = 5) -> dict[str, Any] | None:
        """Read the object, compute its new status from it, write it if it did not change in
        between; retried on conflicts so concurrent writers never overwrite fresher status."""
        for attempt in range(attempts):
            body = self.get(path)
            if body is None:
                return None
            status = compute(body)
            if status is None:
                return None
            try:
                return self.patch_status(path, status, body["metadata"]["resourceVersion"])
            except ApiError as exc:
                if exc.status != 409 or attempt == attempts - 1:
                    raise
        return None


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Kinds whose API is not served (e.g. the Spark operator's CRD is not installed).
    missing_apis: list[str] = field(default_factory=list)


def _ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']} {obj['metadata']['name']}"


def _owned_by(obj: dict[str, Any], owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences", []))


def apply_children(
    kube: Kube, fleet_name: str, namespace: str, owner_uid: str, children: list[dict[str, Any]]
) -> ApplyResult:
    """Make the fleet's children in the cluster exactly `children`: apply them, delete the rest."""
    result = ApplyResult()
    wanted = {(c["kind"], c["metadata"]["name"]) for c in children}
    for api_version, kind, plural in CHILD_KINDS:
        if kind in WRITE_ONLY_KINDS:
            for child in (c for c in children if c["kind"] == kind):
                status, _ = kube.apply(child)
                if status == 201:
                    result.created.append(_ref(child))
            continue
        existing = kube.list(object_path(api_version, plural, namespace),
                             fleet_selector(fleet_name))
        of_kind = [c for c in children if c["kind"] == kind]
        if existing is None:
            if of_kind:
                result.missing_apis.append(f"{kind} ({api_version})")
            continue
        versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in existing}
        for child in of_kind:
            status, applied = kube.apply(child)
            name = child["metadata"]["name"]
            if status == 201:
                result.created.append(_ref(child))
            elif versions.get(name) != applied["metadata"]["resourceVersion"]:
                result.updated.append(_ref(child))
        for obj in existing:
            name = obj["metadata"]["name"]
            if (kind, name) in wanted or not _owned_by(obj, owner_uid):
                continue
            if kube.delete(object_path(api_version, plural, namespace, name)):
                result.deleted.append(f"{kind} {name}")
    return result


@dataclass
class Observed:
    """What the status is computed from."""

    statefulset: dict[str, Any] | None
    spark_apps: dict[str, dict[str, Any] | None]


def observe_children(kube: Kube, fleet_name: str, namespace: str) -> Observed:
    from storefleet_operator.children import SPARK_API_VERSION, child_names

    names = child_names(fleet_name)
    statefulset = kube.get(object_path("apps/v1", "statefulsets", namespace, names["simulator"]))
    apps = {
        job: kube.get(object_path(SPARK_API_VERSION, "sparkapplications", namespace, names[job]))
        for job in ("insights", "bonus")
    }
    return Observed(statefulset=statefulset, spark_apps=apps)
