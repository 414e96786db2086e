"""`tools/cluster/down` leaves nothing: the host is as it was before `up`.

Runs after every other cluster test (see conftest.py): it takes the session's cluster down
itself, then compares the host with the snapshot taken before `up`. The snapshot taken while
the cluster ran must show each kind of change, so an empty difference means `down` removed them
rather than that the snapshot missed them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.conftest import NodeCluster, host_snapshot, node, node_command

pytestmark = pytest.mark.cluster


def added(before: dict[str, Any], after: dict[str, Any], key: str) -> list[str]:
    return sorted(set(after[key]) - set(before[key]))


def added_rules(before: dict[str, Any], after: dict[str, Any], key: str) -> list[str]:
    return sorted(f"{table}: {rule}" for table, rules in after[key].items()
                  for rule in set(rules) - set(before[key].get(table, [])))


def test_down_leaves_nothing(node_cluster: NodeCluster) -> None:
    before, during = node_cluster.before, node_cluster.during
    # While up: the bridge, its iptables chains, mounts, pod cgroups and processes existed.
    assert node.BRIDGE in added(before, during, "links")
    assert any("KUBE-SERVICES" in rule for rule in added_rules(before, during, "iptables"))
    assert any(node.GUARD_CHAIN in rule for rule in added_rules(before, during, "iptables"))
    assert added(before, during, "mounts")
    assert during["pod_cgroups"] and during["processes"] and during["state_dir"]

    result = node_cluster.down()
    assert result.returncode == 0, result.stderr
    after = host_snapshot()
    assert after["processes"] == []
    assert added(before, after, "links") == []
    assert added(before, after, "routes") == []
    assert added_rules(before, after, "iptables") == []
    assert added_rules(before, after, "ip6tables") == []
    assert added(before, after, "nft_tables") == []
    assert added(before, after, "mounts") == []
    assert after["sysctls"] == before["sysctls"]
    assert after["host_paths"] == before["host_paths"]
    assert after["pod_cgroups"] == before["pod_cgroups"]
    assert after["state_dir"] is False

    # Idempotent: a second `down` with nothing left succeeds and changes nothing.
    again = node_command("down")
    assert again.returncode == 0, again.stderr
    assert host_snapshot() == after


def test_down_cleans_up_after_a_failed_up(node_cluster: NodeCluster) -> None:
    """`up` with no time to wait fails part-way, with daemons and the bridge already there;
    `down` still brings the host back to the same state."""
    assert node_cluster.down().returncode == 0  # the session's cluster is gone first
    before = host_snapshot()
    failed = node_command("up", "--timeout", "0")
    assert failed.returncode == 1
    assert "timed out" in failed.stderr, failed.stderr
    partial = host_snapshot()
    assert node.BRIDGE in added(before, partial, "links")
    assert partial["processes"]

    result = node_command("down")
    assert result.returncode == 0, result.stderr
    after = host_snapshot()
    assert after["processes"] == []
    for key in ("links", "routes", "nft_tables", "mounts"):
        assert added(before, after, key) == [], key
    assert added_rules(before, after, "iptables") == []
    assert added_rules(before, after, "ip6tables") == []
    assert after["sysctls"] == before["sysctls"]
    assert after["host_paths"] == before["host_paths"]
    assert after["pod_cgroups"] == before["pod_cgroups"]
    assert after["state_dir"] is False
