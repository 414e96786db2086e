"""JSON schemas for kubeconform, made from a live API server's OpenAPI v2 document.

kubeconform downloads its schemas from the internet by default; here they come from the test
API server instead (built-in kinds and the installed CRDs alike), written as
`<dir>/<group>/<kind>_<version>.json` for the schema location template
`<dir>/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json` (kubeconform's Group is
the part of apiVersion before the slash, so "v1" for the core group).
Strict schemas (`additionalProperties: false` on every object with known properties) make a
misspelt field an error, as `kubectl apply --validate=strict` would.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SCHEMA_LOCATION = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
_INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
_QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _strict(value) for key, value in node.items()}
        if node.get("format") == "int-or-string":
            return {k: v for k, v in node.items() if k not in ("type", "format")} | _INT_OR_STRING
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def write_schemas(openapi_v2: dict[str, Any], folder: Path,
                  wanted: set[tuple[str, str]] | None = None) -> list[Path]:
    """Write one standalone strict schema per kind; `wanted` limits to (apiVersion, kind)."""
    definitions = _strict(copy.deepcopy(openapi_v2["definitions"]))
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = _QUANTITY
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = _INT_OR_STRING
    written = []
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            api_version = f"{group}/{version}" if group else version
            if wanted is not None and (api_version, kind) not in wanted:
                continue
            path = folder / api_version.split("/")[0] / f"{kind.lower()}_{version}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            schema = {"$ref": f"#/definitions/{name}", "definitions": definitions}
            path.write_text(json.dumps(schema))
            written.append(path)
    return written


def assert_kubeconform_accepts(cluster: Any, documents: list[dict[str, Any]], folder: Path) -> None:
    """Validate rendered manifests with kubeconform (strict) against the test API server's own
    schemas, so nothing is downloaded; every document must be checked and valid."""
    import subprocess

    import yaml

    from tests.kubernetes.cluster import tool

    kinds = {(d["apiVersion"], d["kind"]) for d in documents}
    status, openapi = cluster.get("/openapi/v2")
    assert status == 200
    write_schemas(json.loads(openapi), folder / "schemas", wanted=kinds)
    rendered = folder / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run(
        [tool("kubeconform"), "-strict", "-summary", "-output", "json",
         "-schema-location", str(folder / "schemas" / SCHEMA_LOCATION), str(rendered)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["valid"] == len(documents)
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0
