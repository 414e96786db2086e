"""What users type: kubectl apply, get (printer columns), scale, describe, on a real cluster."""

from __future__ import annotations

import pytest
import yaml

from tests.kubernetes.cluster import Cluster, wait_for
from tests.kubernetes.conftest import (
    Api,
    Operator,
    fleet_manifest,
    kubectl,
    set_ready_pods,
    statefulset_replicas,
)

pytestmark = pytest.mark.kubernetes


def test_kubectl_apply_get_scale_describe(cluster: Cluster, api: Api, operator: Operator,
                                          namespace: str) -> None:
    manifest = yaml.safe_dump(fleet_manifest("demo", stores=20, storesPerPod=10))
    applied = kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    assert "storefleet.storefleet.io/demo created" in applied.stdout
    wait_for("the simulator StatefulSet",
             lambda: statefulset_replicas(api, namespace, "demo-simulator") == 2, 60)

    kubectl(cluster, "scale", "-n", namespace, "storefleet/demo", "--replicas=50")
    wait_for("StatefulSet scaled to 5 pods",
             lambda: statefulset_replicas(api, namespace, "demo-simulator") == 5, 60)
    set_ready_pods(api, namespace, "demo-simulator", 5)

    def columns() -> list[str] | None:
        lines = kubectl(cluster, "get", "sf", "-n", namespace).stdout.splitlines()
        row = lines[1].split()
        return lines[0].split() + row if row[2] == "5/5" else None

    header_and_row = wait_for("kubectl get sf to show 5/5 ready", columns, 60)
    assert header_and_row[:6] == ["NAME", "STORES", "READY", "INSIGHTS", "BONUS", "AGE"]
    assert header_and_row[6:11] == ["demo", "50", "5/5", "PENDING", "PENDING"]

    described = kubectl(cluster, "describe", "storefleet", "demo", "-n", namespace).stdout
    assert "Created StatefulSet demo-simulator" in described
    assert "SimulatorReady" in described


def test_kubectl_apply_of_an_invalid_fleet_says_what_is_wrong(cluster: Cluster,
                                                              namespace: str) -> None:
    manifest = yaml.safe_dump(fleet_manifest(
        "broken", bonus={"shortWindowMinutes": 600, "longWindowHours": 2}))
    result = kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert "bonus.longWindowHours must cover bonus.shortWindowMinutes" in result.stderr
    typo = yaml.safe_dump(fleet_manifest("typo", storez=3))
    result = kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=typo, check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.storez"' in result.stderr
