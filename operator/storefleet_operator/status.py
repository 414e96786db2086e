"""The pure status computation: a fleet and its observed children -> the fleet's `status`.

- `pods`: desired simulator pods; `readyPods`: the StatefulSet's readyReplicas; `ready`: "r/p".
- `stores`: stores running on ready pods, min(spec.stores, readyPods * storesPerPod) — the scale
  subresource's status replicas, so `kubectl scale` is followed by the number catching up.
- `insights.state` / `bonus.state`: the SparkApplication's .status.applicationState.state
  (PENDING before the Spark operator reports one, Disabled when analytics is off, Missing when
  the application is absent).
- conditions Reconciled, SimulatorReady, AnalyticsReady and Ready; a condition keeps its
  lastTransitionTime while its status does not change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from storefleet.fleet import Fleet
from storefleet_operator.children import child_names, simulator_pods, simulator_selector

RUNNING = "RUNNING"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spark_state(fleet: Fleet, app: dict[str, Any] | None) -> str:
    if not fleet.spec.analytics.enabled:
        return "Disabled"
    if app is None:
        return "Missing"
    state = ((app.get("status") or {}).get("applicationState") or {}).get("state")
    return state or "PENDING"


def _condition(type_: str, ok: bool, reason: str, message: str, generation: int | None) -> dict:
    condition = {"type": type_, "status": "True" if ok else "False", "reason": reason,
                 "message": message}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def merge_conditions(
    previous: list[dict[str, Any]] | None, current: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Current conditions, each keeping its previous lastTransitionTime if its status held."""
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for condition in current:
        old = before.get(condition["type"])
        same = old is not None and old.get("status") == condition["status"]
        transition = old.get("lastTransitionTime") if same and old else None
        merged.append({**condition, "lastTransitionTime": transition or now})
    return merged


def fleet_status(
    fleet: Fleet,
    *,
    statefulset: dict[str, Any] | None,
    spark_apps: dict[str, dict[str, Any] | None],
    previous: dict[str, Any] | None,
    observed_generation: int | None,
    reconcile_error: str | None = None,
    missing_apis: list[str] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """The fleet's new status. `observed_generation` is the generation whose children were
    applied (None: a refresh, which keeps the previous generation and Reconciled condition);
    `reconcile_error` is why applying failed, if it did."""
    now = now or now_rfc3339()
    previous = previous or {}
    spec = fleet.spec
    pods = simulator_pods(spec.stores, spec.stores_per_pod)
    sts_status = (statefulset or {}).get("status") or {}
    ready_pods = min(int(sts_status.get("readyReplicas") or 0), pods)
    stores = min(spec.stores, ready_pods * spec.stores_per_pod)
    names = child_names(fleet.name)
    insights = spark_state(fleet, spark_apps.get("insights"))
    bonus = spark_state(fleet, spark_apps.get("bonus"))
    generation = observed_generation
    if generation is None:
        generation = previous.get("observedGeneration")

    carried = next((c for c in previous.get("conditions") or []
                    if c.get("type") == "Reconciled"), None)
    if observed_generation is None and not reconcile_error and not missing_apis and carried:
        # A refresh between reconciles: how the last reconcile went still holds.
        reconciled = {k: v for k, v in carried.items() if k != "lastTransitionTime"}
    elif reconcile_error:
        reconciled = _condition("Reconciled", False, "ApplyFailed", reconcile_error, generation)
    elif missing_apis:
        reconciled = _condition(
            "Reconciled", False, "ApiMissing",
            f"not served by this cluster: {', '.join(missing_apis)}; install the Spark operator"
            " (its CRD) or set spec.analytics.enabled: false", generation)
    else:
        applied = "children applied" if generation is None else (
            f"children match generation {generation}")
        reconciled = _condition("Reconciled", True, "Applied", applied, generation)
    simulator_ok = statefulset is not None and ready_pods >= pods
    simulator = _condition(
        "SimulatorReady", simulator_ok,
        "PodsReady" if simulator_ok else "PodsNotReady",
        f"{ready_pods}/{pods} simulator pods ready, {stores}/{spec.stores} stores running",
        generation)
    if not spec.analytics.enabled:
        analytics = _condition("AnalyticsReady", True, "Disabled", "analytics is disabled",
                               generation)
    else:
        running = insights == RUNNING and bonus == RUNNING
        analytics = _condition(
            "AnalyticsReady", running, "Running" if running else "NotRunning",
            f"{names['insights']}: {insights}, {names['bonus']}: {bonus}", generation)
    parts = [reconciled, simulator, analytics]
    all_ok = all(c["status"] == "True" for c in parts)
    not_ok = [c["type"] for c in parts if c["status"] != "True"]
    ready = _condition("Ready", all_ok, "AllReady" if all_ok else "NotReady",
                       "fleet is running" if all_ok else f"waiting for {', '.join(not_ok)}",
                       generation)

    status: dict[str, Any] = {
        "pods": pods,
        "readyPods": ready_pods,
        "ready": f"{ready_pods}/{pods}",
        "stores": stores,
        "selector": simulator_selector(fleet.name),
        "insights": {"name": names["insights"], "state": insights},
        "bonus": {"name": names["bonus"], "state": bonus},
        "conditions": merge_conditions(previous.get("conditions"),
                                       [ready, reconciled, simulator, analytics], now),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def status_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether writing `new` would change anything the operator owns in `old`."""
    old = old or {}
    return any(old.get(key) != value for key, value in new.items())
