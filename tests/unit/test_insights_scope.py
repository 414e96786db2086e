"""STOREFLEET_INSIGHTS_SCOPE: which scopes one insights job computes (insights/scope.py)."""

from __future__ import annotations

import pytest

from storefleet.endpoints import SettingError
from storefleet.insights.contract import fleet_all, fleet_of_scope
from storefleet.insights.scope import JobScope


def test_scope_from_the_environment() -> None:
    assert JobScope.from_env({}) == JobScope("all")
    assert JobScope.from_env({"STOREFLEET_INSIGHTS_SCOPE": "platform",
                              "STOREFLEET_FLEET_NAME": "demo"}) == JobScope("platform")
    fleet = JobScope.from_env({"STOREFLEET_INSIGHTS_SCOPE": "fleet",
                               "STOREFLEET_FLEET_NAME": "demo"})
    assert (fleet.mode, fleet.fleet, fleet.job, fleet.anchor) == (
        "fleet", "demo", "fleet:demo", "ALL:demo")
    with pytest.raises(SettingError, match="STOREFLEET_FLEET_NAME"):
        JobScope.from_env({"STOREFLEET_INSIGHTS_SCOPE": "fleet"})
    with pytest.raises(SettingError, match="STOREFLEET_INSIGHTS_SCOPE must be one of"):
        JobScope.from_env({"STOREFLEET_INSIGHTS_SCOPE": "galaxy"})


def test_scopes_of_a_store_per_mode() -> None:
    fleet, platform, everything = JobScope("fleet", "a"), JobScope("platform"), JobScope("all")
    assert fleet.scopes_of("a-0001") == ["a-0001", "ALL:a"]
    assert fleet.scopes_of("a-b-0001") == []  # fleet "a-b"
    assert fleet.scopes_of("s1") == []
    assert platform.scopes_of("a-0001") == ["ALL"]
    assert platform.has_stores is False and platform.anchor == "ALL"
    assert everything.scopes_of("a-0001") == ["a-0001", "ALL:a", "ALL"]
    assert everything.scopes_of("s1") == ["s1", "ALL"]
    assert fleet_of_scope(fleet_all("a-b")) == "a-b"
    assert fleet_of_scope("ALL") is None and fleet_of_scope("a-0001") is None
