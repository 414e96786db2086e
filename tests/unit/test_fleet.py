"""The StoreFleet manifest model: defaults, validation messages, store ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from storefleet.fleet import ManifestError, load_manifest, parse_fleet

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def doc(spec: dict | None = None, name: str = "demo") -> dict:
    return {"apiVersion": "storefleet.io/v1alpha1", "kind": "StoreFleet",
            "metadata": {"name": name}, "spec": spec or {}}  # fmt: skip


def test_defaults_and_stable_store_ids() -> None:
    fleet = parse_fleet(doc({"stores": 3}))
    assert fleet.spec.simulation.cycle_seconds == 5.0
    assert fleet.spec.simulation.users_per_cycle == 15
    assert fleet.store_ids == ["demo-0000", "demo-0001", "demo-0002"]
    assert parse_fleet(doc({"stores": 3})).store_ids == fleet.store_ids


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"stores": -1}, "spec.stores"),
        ({"simulation": {"cycleSeconds": 0}}, "spec.simulation.cycleSeconds"),
        ({"storesPerPod": 0}, "spec.storesPerPod"),
        ({"bonus": {"shortWindowMinutes": 600, "longWindowHours": 1}}, "longWindowHours"),
        ({"simulaton": {}}, "spec.simulaton"),
        ({"coupons": {"discountPercent": "lots"}}, "spec.coupons.discountPercent"),
    ],
)
def test_invalid_spec_names_the_setting(spec: dict, message: str) -> None:
    with pytest.raises(ManifestError, match=message.replace(".", r"\.")):
        parse_fleet(doc(spec))


def test_invalid_name_and_kind() -> None:
    with pytest.raises(ManifestError, match=r"metadata\.name"):
        parse_fleet(doc(name="Demo_1"))
    with pytest.raises(ManifestError, match="kind must be StoreFleet"):
        parse_fleet({**doc(), "kind": "Deployment"})


def test_every_example_manifest_loads() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files, "examples/ has no manifests"
    for path in files:
        assert load_manifest(path)


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ManifestError, match="no StoreFleet"):
        load_manifest(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(broken)
