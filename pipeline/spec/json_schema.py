"""`keel schema`: the JSON Schema of a spec file, for editors (yaml-language-server completes and checks keys).

It is pydantic's `model_json_schema` of pipeline/spec/schema.py's Spec, loosened for what a spec FILE is
before Hydra composes it: no key is required (config groups in `defaults` fill them in; so `oneOf`
becomes `anyOf`: a model without `family` fits each family), `defaults` is allowed, and any value may
be an interpolation (`${data.rows}`). Unknown keys stay errors (additionalProperties false), so a typo
is underlined in the editor; `keel check` still does the full check.
"""

from __future__ import annotations

import json
from typing import Any

INTERPOLATION = {"type": "string", "pattern": r"^.*\$\{.+\}.*$", "description": "an OmegaConf interpolation"}
DEFAULTS = {
    "type": "array",
    "description": "Hydra defaults list: config groups (contract: NAME, model: NAME, gates: [A, B], ...) and _self_",
    "items": {"anyOf": [{"type": "string"}, {"type": "object"}]},
}
_KEEP = ("title", "description", "default", "examples")


def spec_json_schema() -> dict[str, Any]:
    from pipeline.spec.schema import Spec

    schema = Spec.model_json_schema()
    _loosen(schema)
    schema["properties"]["defaults"] = DEFAULTS
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "Keel spec",
        "description": "A Keel spec file before composition (keel check does the full check); from keel schema.",
    }


def schema_text() -> str:
    return json.dumps(spec_json_schema(), indent=2, sort_keys=False) + "\n"


def _loosen(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _loosen(item)
        return
    if not isinstance(node, dict):
        return
    node.pop("required", None)
    if "oneOf" in node:  # without required keys (family comes from a group) several branches match
        node["anyOf"] = node.pop("oneOf")
    for value in node.values():
        _loosen(value)
    properties = node.get("properties")
    if isinstance(properties, dict):
        for key, sub in properties.items():
            properties[key] = _or_interpolation(sub)
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict) and node[key]:
            node[key] = _or_interpolation(node[key])


def _or_interpolation(sub: dict[str, Any]) -> dict[str, Any]:
    if sub.get("type") == "string" and "pattern" not in sub and "enum" not in sub:
        return sub  # a plain string already takes `${...}`
    kept = {k: sub[k] for k in _KEEP if k in sub}
    inner = {k: v for k, v in sub.items() if k not in _KEEP}
    return {**kept, "anyOf": [inner, INTERPOLATION]}
