"""The pure status computation from observed children."""

from __future__ import annotations

from typing import Any

from storefleet.fleet import parse_fleet
from storefleet_operator.status import fleet_status, merge_conditions, status_changed

T0, T1 = "2026-11-26T10:00:00Z", "2026-11-26T10:05:00Z"


def fleet(**spec: Any):
    return parse_fleet({"apiVersion": "storefleet.io/v1alpha1", "kind": "StoreFleet",
                        "metadata": {"name": "demo"}, "spec": spec})


def app(state: str | None) -> dict[str, Any]:
    return {"status": {"applicationState": {"state": state}}} if state else {"spec": {}}


def sts(ready: int) -> dict[str, Any]:
    return {"status": {"readyReplicas": ready}}


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_all_running() -> None:
    status = fleet_status(fleet(stores=25, storesPerPod=10), statefulset=sts(3),
                          spark_apps={"insights": app("RUNNING"), "bonus": app("RUNNING")},
                          previous=None, observed_generation=4, now=T0)
    assert status["pods"] == 3
    assert status["readyPods"] == 3
    assert status["ready"] == "3/3"
    assert status["stores"] == 25
    assert status["observedGeneration"] == 4
    assert status["insights"] == {"name": "demo-insights", "state": "RUNNING"}
    assert status["selector"] == "storefleet.io/fleet=demo,app.kubernetes.io/component=simulator"
    assert conditions(status) == {"Ready": "True", "Reconciled": "True",
                                  "SimulatorReady": "True", "AnalyticsReady": "True"}


def test_partly_ready() -> None:
    status = fleet_status(fleet(stores=25, storesPerPod=10), statefulset=sts(1),
                          spark_apps={"insights": app(None), "bonus": app("FAILED")},
                          previous=None, observed_generation=1, now=T0)
    assert status["stores"] == 10
    assert status["ready"] == "1/3"
    assert status["insights"]["state"] == "PENDING"
    assert status["bonus"]["state"] == "FAILED"
    assert conditions(status)["Ready"] == "False"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "SimulatorReady" in ready["message"] and "AnalyticsReady" in ready["message"]


def test_analytics_disabled_and_missing_statefulset() -> None:
    status = fleet_status(fleet(analytics={"enabled": False}), statefulset=None,
                          spark_apps={"insights": None, "bonus": None}, previous=None,
                          observed_generation=1, now=T0)
    assert status["insights"]["state"] == "Disabled"
    assert conditions(status)["AnalyticsReady"] == "True"
    assert conditions(status)["SimulatorReady"] == "False"


def test_errors_and_missing_apis_show_in_reconciled() -> None:
    failed = fleet_status(fleet(), statefulset=None, spark_apps={}, previous=None,
                          observed_generation=None, reconcile_error="403 Forbidden: nope")
    (reconciled,) = [c for c in failed["conditions"] if c["type"] == "Reconciled"]
    assert (reconciled["status"], reconciled["reason"]) == ("False", "ApplyFailed")
    assert "observedGeneration" not in failed
    missing = fleet_status(fleet(), statefulset=None, spark_apps={}, previous=None,
                           observed_generation=2, missing_apis=["SparkApplication (x)"])
    (reconciled,) = [c for c in missing["conditions"] if c["type"] == "Reconciled"]
    assert reconciled["reason"] == "ApiMissing"
    assert "analytics.enabled: false" in reconciled["message"]


def test_observed_generation_is_kept_when_only_refreshing() -> None:
    status = fleet_status(fleet(), statefulset=sts(1), spark_apps={},
                          previous={"observedGeneration": 7}, observed_generation=None)
    assert status["observedGeneration"] == 7


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = merge_conditions(None, [{"type": "Ready", "status": "False"}], T0)
    same = merge_conditions(first, [{"type": "Ready", "status": "False"}], T1)
    flipped = merge_conditions(same, [{"type": "Ready", "status": "True"}], T1)
    assert same[0]["lastTransitionTime"] == T0
    assert flipped[0]["lastTransitionTime"] == T1


def test_status_changed() -> None:
    kwargs = {"statefulset": sts(1), "spark_apps": {}, "observed_generation": 1, "now": T0}
    status = fleet_status(fleet(), previous=None, **kwargs)
    again = fleet_status(fleet(), previous=status, **{**kwargs, "now": T1})
    assert not status_changed(status, again)
    assert status_changed(status, fleet_status(fleet(), previous=status,
                                               **{**kwargs, "statefulset": sts(0)}))


def test_a_refresh_keeps_how_the_last_reconcile_went() -> None:
    failed = fleet_status(fleet(), statefulset=None, spark_apps={}, previous=None,
                          observed_generation=3, missing_apis=["SparkApplication (x)"], now=T0)
    refreshed = fleet_status(fleet(), statefulset=sts(1), spark_apps={}, previous=failed,
                             observed_generation=None, now=T1)
    (reconciled,) = [c for c in refreshed["conditions"] if c["type"] == "Reconciled"]
    assert (reconciled["reason"], reconciled["lastTransitionTime"]) == ("ApiMissing", T0)
    assert refreshed["observedGeneration"] == 3
