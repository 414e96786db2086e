"""The StoreFleet CRD mirrors the pydantic FleetSpec: names, types, defaults, bounds, patterns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from storefleet.fleet import API_GROUP, API_VERSION, KIND, NAME_PATTERN, Bonus, FleetSpec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "charts" / "storefleet" / "crds" / "storefleet.io_storefleets.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {**defs[schema["$ref"].split("/")[-1]],
                **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _crd_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Apply structural-schema defaulting the way the API server does."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    result = dict(value)
    for name, prop in schema.get("properties", {}).items():
        if name not in result and "default" in prop:
            result[name] = prop["default"]
        if name in result:
            result[name] = _crd_defaults(prop, result[name])
    return result


def _compare(model: dict[str, Any], crd: dict[str, Any], defs: dict[str, Any], where: str,
             problems: list[str]) -> None:
    model = _resolve(model, defs)
    nullable = False
    if "anyOf" in model:
        options = [_resolve(o, defs) for o in model["anyOf"]]
        non_null = [o for o in options if o.get("type") != "null"]
        assert len(non_null) == 1, where
        nullable = len(non_null) < len(options)
        model = {**non_null[0], **{k: v for k, v in model.items() if k != "anyOf"}}
    if crd.get("type") != model.get("type"):
        problems.append(f"{where}: type {crd.get('type')} != model {model.get('type')}")
    if bool(crd.get("nullable")) != nullable:
        problems.append(f"{where}: nullable {crd.get('nullable')} != model {nullable}")
    if model.get("type") == "object":
        model_props, crd_props = model.get("properties", {}), crd.get("properties", {})
        if set(model_props) != set(crd_props):
            problems.append(f"{where}: fields {sorted(crd_props)} != model {sorted(model_props)}")
        for name in set(model_props) & set(crd_props):
            _compare(model_props[name], crd_props[name], defs, f"{where}.{name}", problems)
        # `{}` lets the nested defaults apply; a spelled-out default must equal the model's.
        if "default" in model and crd.get("default") not in ({}, model["default"]):
            problems.append(f"{where}: default {crd.get('default')!r} is neither {{}} nor "
                            f"the model's {model['default']!r}")
        return
    if "default" in model and model["default"] is not None:
        if crd.get("default") != model["default"]:
            problems.append(f"{where}: default {crd.get('default')!r} != {model['default']!r}")
    elif "default" in crd:
        problems.append(f"{where}: CRD has a default the model lacks")
    lower = model.get("minimum", model.get("exclusiveMinimum"))
    exclusive = "exclusiveMinimum" in model
    if crd.get("minimum") != lower or bool(crd.get("exclusiveMinimum")) != exclusive:
        problems.append(f"{where}: minimum {crd.get('minimum')} exclusive "
                        f"{crd.get('exclusiveMinimum')} != model {lower} exclusive {exclusive}")
    upper = model.get("maximum", model.get("exclusiveMaximum"))
    if crd.get("maximum") != upper or bool(crd.get("exclusiveMaximum")) != (
        "exclusiveMaximum" in model
    ):
        problems.append(f"{where}: maximum {crd.get('maximum')} != model {upper}")
    if crd.get("pattern") != model.get("pattern"):
        problems.append(f"{where}: pattern {crd.get('pattern')!r} != {model.get('pattern')!r}")


def test_crd_names_match_the_model(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["spec"]["group"] == API_GROUP
    assert version["name"] == API_VERSION
    assert crd["spec"]["names"]["kind"] == KIND
    assert crd["spec"]["names"]["plural"] == "storefleets"
    assert "sf" in crd["spec"]["names"]["shortNames"]
    assert crd["metadata"]["name"] == f"storefleets.{API_GROUP}"


def test_spec_schema_mirrors_fleetspec(version: dict[str, Any]) -> None:
    model = FleetSpec.model_json_schema(by_alias=True)
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    problems: list[str] = []
    _compare(model, spec_schema, model.get("$defs", {}), "spec", problems)
    assert not problems, "CRD and FleetSpec drifted:\n" + "\n".join(problems)


def test_crd_defaulting_gives_the_model_defaults(version: dict[str, Any]) -> None:
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = _crd_defaults(spec_schema, {})
    expected = FleetSpec().model_dump(mode="json", by_alias=True, exclude_none=True)
    assert defaulted == expected
    # And a defaulted CRD object is accepted by the model unchanged.
    assert FleetSpec.model_validate(defaulted) == FleetSpec()


def test_cross_field_rules_are_cel_rules_with_the_models_messages(version: dict) -> None:
    bonus = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["bonus"]
    (rule,) = bonus["x-kubernetes-validations"]
    with pytest.raises(ValueError) as refused:
        Bonus(shortWindowMinutes=120, longWindowHours=1)
    assert rule["message"] in str(refused.value)
    assert "longWindowHours * 60 >= self.shortWindowMinutes" in rule["rule"]


def test_name_rule_matches_the_models_pattern(version: dict[str, Any]) -> None:
    (rule,) = version["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    assert NAME_PATTERN.pattern in rule["rule"]


def test_subresources_and_printer_columns(version: dict[str, Any]) -> None:
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.stores",
        "statusReplicasPath": ".status.stores",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Stores", "Ready", "Insights", "Bonus", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    # Without this (or a full schema) the API server silently drops status writes.
    assert status["x-kubernetes-preserve-unknown-fields"] is True
