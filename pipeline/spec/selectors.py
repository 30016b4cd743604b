"""Feature selectors: `model.features: all` or `{include, exclude, dtypes}` become a plain list.

A table with 80 columns should not need 80 feature lines, and a column added to the contract
should reach the model without a second edit. The rule is resolved right after composition,
before type-checking, so the typed Spec (and the resolved spec that runs record and hash)
always holds a list: training, serving and `keel diff` never see a selector, and `all` gives
the same spec hash, hence the same model, as the explicit list in the same order.

What a selector never picks: the label, the entity id, the timestamp (and, for recommendation,
the item column). Fairness group columns (`fairness.groups`, `evaluation.group_columns`) are
for reporting, so `all` and wildcard patterns leave them out; an include pattern that names one
literally (no wildcard) selects it. Order: contract columns in contract order, then derived
features in declaration order (derived features count as dtype `float`).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from pipeline.spec.errors import Problem, unknown

if TYPE_CHECKING:
    from pipeline.spec.compose import Provenance

SELECTOR_KEYS = ("include", "exclude", "dtypes")
DTYPES = ("int", "float", "bool", "str", "category", "datetime")
_WILDCARDS = set("*?[")


def resolve_feature_selectors(data: dict[str, Any], provenance: Provenance) -> list[Problem]:
    """Replace every selector in `model.features` and `candidates[*].features` by its list, in place."""
    problems: list[Problem] = []
    targets: list[tuple[str, Any]] = [("model", data.get("model"))]
    candidates = data.get("candidates")
    if isinstance(candidates, list):
        targets += [(f"candidates.{i}", c) for i, c in enumerate(candidates)]
    for key, model in targets:
        if not isinstance(model, dict) or not is_selector(model.get("features")):
            continue
        features, reasons = select_features(data, model["features"])
        problems += [provenance.problem(f"{key}.features", reason) for reason in reasons]
        if not reasons:
            model["features"] = features
    return problems


def is_selector(value: Any) -> bool:
    return value == "all" or isinstance(value, dict)


def select_features(data: dict[str, Any], selector: Any) -> tuple[list[str], list[str]]:
    """(features, reasons it is wrong) for one selector over a composed spec's columns."""
    if selector == "all":
        selector = {}
    if not isinstance(selector, dict):
        return [], [f"features is a list of names, 'all' or {{include, exclude, dtypes}}, not {selector!r}"]
    wrong = [k for k in selector if k not in SELECTOR_KEYS]
    if wrong:
        return [], [unknown("feature selector key", str(k), SELECTOR_KEYS) for k in wrong]
    include, exclude, dtypes = (_strings(selector.get(k)) for k in SELECTOR_KEYS)
    parsed = zip(SELECTOR_KEYS, (include, exclude, dtypes), strict=True)
    reasons = [f"'{k}' must be a list of strings" for k, v in parsed if v is None]
    if reasons:
        return [], reasons
    reasons = [unknown("dtype", d, DTYPES) for d in dtypes if d not in DTYPES]
    typed = _typed_names(data)
    never = _role_columns(data)
    reporting = _reporting_columns(data)
    for pattern in include:
        if not (_WILDCARDS & set(pattern)) and pattern not in typed:
            reasons.append(unknown("feature", pattern, typed))
        elif pattern in never:
            reasons.append(f"'{pattern}' is {never[pattern]}; a selector never picks it")
    if reasons:
        return [], reasons
    patterns = include or ["*"]
    chosen = []
    for name, dtype in typed.items():
        if name in never or (dtypes and dtype not in dtypes):
            continue
        if any(fnmatchcase(name, p) for p in exclude):
            continue
        literal = name in include
        if literal or (name not in reporting and any(fnmatchcase(name, p) for p in patterns)):
            chosen.append(name)
    if not chosen:
        return [], [
            "the feature selector matches no feature (the label, id, timestamp and fairness groups are left out)"
        ]
    return chosen, []


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _typed_names(data: dict[str, Any]) -> dict[str, str]:
    """Contract column -> dtype, then derived feature -> 'float', in declaration order."""
    contract = data.get("contract") if isinstance(data.get("contract"), dict) else {}
    columns = contract.get("columns") if isinstance(contract.get("columns"), dict) else {}
    typed = {str(n): str(c.get("dtype")) if isinstance(c, dict) else "" for n, c in columns.items()}
    features = data.get("features") if isinstance(data.get("features"), dict) else {}
    derived = features.get("derived") if isinstance(features.get("derived"), dict) else {}
    typed.update({str(n): "float" for n in derived if str(n) not in typed})
    return typed


def _role_columns(data: dict[str, Any]) -> dict[str, str]:
    block = data.get("data") if isinstance(data.get("data"), dict) else {}
    roles = {"label": "the label", "entity_id": "the entity id", "timestamp": "the timestamp"}
    if data.get("task") == "recommendation":
        roles["item"] = "the item column"
    return {str(block[r]): what for r, what in roles.items() if block.get(r)}


def _reporting_columns(data: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    fairness = data.get("fairness")
    if isinstance(fairness, dict):
        for group in fairness.get("groups") or []:
            names.update(str(c) for c in (group if isinstance(group, list) else [group]))
    evaluation = data.get("evaluation")
    if isinstance(evaluation, dict):
        names.update(str(c) for c in evaluation.get("group_columns") or [])
    return names
