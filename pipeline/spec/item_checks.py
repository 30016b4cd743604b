"""`keel check` for a recommendation spec's item attributes (docs/adr/0033-item-attributes.md).

The re-ranker's diversity attribute, the cold-start attribute, creator fairness groups and
`exposure_equity[...]` gates must name attributes declared in `data.items.attributes`, and
`ranker.features` may name only built-in features or those of a declared attribute. Caught
here, a typo is a file:line error (exit 2) before any data is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.spec.catalog import RANKING_FEATURES, attribute_feature_names
from pipeline.spec.errors import unknown
from pipeline.spec.schema import Spec

Finding = tuple[str, str]


def declared_types(spec: Spec) -> dict[str, str]:
    """Declared item attribute -> type (empty without data.items)."""
    items = spec.data.items
    return {name: a.type for name, a in (items.attributes if items is not None else {}).items()}


def ranking_feature_names(spec: Spec) -> list[str]:
    """Every name `ranker.features` may use for this spec."""
    extra = attribute_feature_names(declared_types(spec), spec.data.users is not None)
    return [*RANKING_FEATURES, *extra]


def _attribute(
    key: str, name: str, declared: dict[str, str], kinds: tuple[str, ...] | None = None
) -> Iterator[Finding]:
    if name not in declared:
        what = "declared item attribute (data.items.attributes)"
        yield key, unknown(what, name, list(declared)) if declared else f"'{name}' is not a {what}: none is declared"
    elif kinds and declared[name] not in kinds:
        yield key, f"'{name}' is a {declared[name]} attribute; this needs {' or '.join(kinds)}"


def check_item_attributes(spec: Spec) -> Iterator[Finding]:
    """Every attribute a recommendation spec acts on is declared, and of a kind that fits."""
    if spec.task != "recommendation":
        return
    declared = declared_types(spec)
    clash = sorted(set(attribute_feature_names(declared, True)) & set(RANKING_FEATURES))
    for feature in clash:
        yield "data.items.attributes", f"attribute feature '{feature}' clashes with a built-in ranking feature"
    if spec.reranker is not None:
        yield from _attribute(
            "reranker.diversity_attribute", spec.reranker.diversity_attribute, declared, ("categorical", "multi")
        )
    cold = spec.serving.cold_start
    if cold.policy == "popular_in" and cold.attribute is not None:
        yield from _attribute("serving.cold_start.attribute", cold.attribute, declared, ("categorical",))
    if spec.fairness is not None:
        for index, group in enumerate(spec.fairness.creator_groups):
            for position, column in enumerate(group):
                yield from _attribute(f"fairness.creator_groups.{index}.{position}", column, declared)
    for name, gate in spec.gates.items():
        metric = gate.metric or name
        if metric.startswith("exposure_equity[") and metric.endswith("]"):
            key = f"gates.{name}.metric" if gate.metric else f"gates.{name}"
            for column in metric[len("exposure_equity[") : -1].split("*"):
                yield from _attribute(key, column, declared)
