"""Per-fleet ingest tokens (events.tokens) and how `storefleet up` hands them out."""

from __future__ import annotations

from pathlib import Path

import pytest

from storefleet.components import LocalContext, plan_components
from storefleet.events.bounds import fleet_of_store
from storefleet.events.tokens import fleet_token, token_fleet
from storefleet.fleet import load_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_token_names_its_fleet_only_under_its_key():
    token = fleet_token(b"key", "north")
    assert token_fleet(b"key", token) == "north"
    assert token_fleet(b"other", token) is None
    assert token_fleet(b"key", token.replace("north", "south")) is None
    assert token_fleet(b"key", "sf1.north.") is None
    assert token_fleet(b"key", fleet_token(b"key", "a.b")) == "a.b"


@pytest.mark.parametrize("bad", ["", "a b", "x\n"])
def test_not_a_fleet_name(bad):
    with pytest.raises(ValueError):
        fleet_token(b"key", bad)


def test_up_gives_each_fleets_simulator_its_own_token_and_only_the_webhook_the_key(tmp_path):
    fleets = load_manifest(EXAMPLES / "two-fleets.yaml")
    context = LocalContext(state_dir=tmp_path, ports={"webhook": 1, "dashboard": 2},
                           env={"STOREFLEET_INGEST_TOKEN": "admin"}, token_key=b"k3y")
    specs = {spec.name: spec for spec in plan_components(fleets, context)}
    assert specs["webhook"].env["STOREFLEET_INGEST_TOKEN_KEY"] == "k3y"
    for fleet in fleets:
        env = specs[f"simulate-{fleet.name}"].env
        assert token_fleet(b"k3y", env["STOREFLEET_INGEST_TOKEN"]) == fleet.name
        assert "STOREFLEET_INGEST_TOKEN_KEY" not in env
        assert {fleet_of_store(s) for s in fleet.store_ids} == {fleet.name}
