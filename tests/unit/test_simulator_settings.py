"""Simulator settings: fleet from a manifest or the environment, store ranges, clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from storefleet.cli import main
from storefleet.simulator.settings import (
    SettingError,
    events_url,
    load_fleet,
    simulator_settings,
    store_range,
)

BASE = {"STOREFLEET_PG_DSN": "postgresql://x@127.0.0.1:1/db", "STOREFLEET_INGEST_URL":
        "http://127.0.0.1:9/", "STOREFLEET_INGEST_TOKEN": "t", "STOREFLEET_FLEET_NAME": "demo"}


def env(**extra: str) -> dict[str, str]:
    return {**BASE, **extra}


def test_fleet_spec_from_the_environment() -> None:
    spec = {"stores": 12, "storesPerPod": 5, "simulation": {"cycleSeconds": 2, "seed": 9}}
    settings = simulator_settings(environ=env(STOREFLEET_FLEET_SPEC=json.dumps(spec),
                                              STOREFLEET_POD_ORDINAL="2"))
    assert settings.fleet.name == "demo"
    assert settings.fleet.spec.simulation.cycle_seconds == 2
    assert settings.store_ids == ["demo-0010", "demo-0011"]
    assert settings.seed == 9
    assert settings.ingest_url == "http://127.0.0.1:9/v1/events"


@pytest.mark.parametrize(("spec", "named"), [
    ({"stores": -1}, "spec.stores"),
    ({"simulation": {"cycleSeconds": 0}}, "spec.simulation.cycleSeconds"),
    ({"simulation": {"usersPerCycle": -3}}, "spec.simulation.usersPerCycle"),
    ({"priceUpdater": {"maxChangePercent": 0}}, "spec.priceUpdater.maxChangePercent"),
])
def test_invalid_settings_name_the_setting(spec: dict, named: str) -> None:
    with pytest.raises(SettingError) as error:
        load_fleet(None, None, env(STOREFLEET_FLEET_SPEC=json.dumps(spec)))
    assert "STOREFLEET_FLEET_SPEC" in str(error.value) and named in str(error.value)


def test_store_ranges() -> None:
    fleet = load_fleet(None, None, env(STOREFLEET_FLEET_SPEC='{"stores": 10}'))
    assert store_range(fleet, None, None, {}) == (0, 10)
    assert store_range(fleet, 3, 5, {}) == (3, 5)
    assert store_range(fleet, None, None, {"STOREFLEET_STORE_RANGE": "4:10"}) == (4, 10)
    with pytest.raises(SettingError, match="STOREFLEET_STORE_RANGE"):
        store_range(fleet, None, None, {"STOREFLEET_STORE_RANGE": "4-10"})
    with pytest.raises(SettingError, match=r"past spec\.stores"):
        store_range(fleet, 0, 11, {})
    with pytest.raises(SettingError, match="no stores"):
        store_range(fleet, 5, 5, {})


def test_missing_endpoints_are_named() -> None:
    with pytest.raises(SettingError, match="STOREFLEET_INGEST_TOKEN"):
        simulator_settings(environ={k: v for k, v in env().items()
                                    if k != "STOREFLEET_INGEST_TOKEN"})
    with pytest.raises(SettingError, match="STOREFLEET_INGEST_URL"):
        events_url("ftp://nope")


def test_the_command_fails_at_start_naming_the_setting(tmp_path) -> None:
    manifest = tmp_path / "fleet.yaml"
    manifest.write_text(
        "apiVersion: storefleet.io/v1alpha1\nkind: StoreFleet\nmetadata: {name: demo}\n"
        "spec: {simulation: {cycleSeconds: 0}}\n"
    )
    result = CliRunner().invoke(main, ["simulate", "-f", str(manifest)], env=BASE)
    assert result.exit_code == 2
    assert "spec.simulation.cycleSeconds" in result.output
    result = CliRunner().invoke(main, ["price-updater"], env={
        **BASE, "STOREFLEET_FLEET_SPEC": '{"priceUpdater": {"minPrice": -1}}'})
    assert result.exit_code == 2
    assert "spec.priceUpdater.minPrice" in result.output
