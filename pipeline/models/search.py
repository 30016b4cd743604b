"""A model's `search` grid as the list of concrete configurations selection cross-validates.

Each point is the model's own `params` with the grid's values for the keys it names, validated as
params again (so a point never holds a value the family refuses) and with `search` cleared: the
point is what the final fit, the refit and the registered bundle use when it wins
(docs/adr/0032-parameter-search.md).
"""

from __future__ import annotations

import itertools
from typing import Any

from pipeline.spec.schema import SEARCH_MAX_POINTS


def grid_points(search: Any) -> list[dict[str, Any]]:
    """Every combination of the grid's values, first key slowest, in the order written; [{}] without a grid."""
    if search is None:
        return [{}]
    lists = search.lists() if hasattr(search, "lists") else {k: list(v) for k, v in dict(search).items()}
    points = [dict(zip(lists, values, strict=True)) for values in itertools.product(*lists.values())]
    if len(points) > SEARCH_MAX_POINTS:  # the schema refuses such a spec; a spec built in code is held to it too
        raise ValueError(f"search holds {len(points)} points; the most is {SEARCH_MAX_POINTS}")
    return points


def configurations(model_spec: Any) -> list[tuple[dict[str, Any], Any]]:
    """(point, the model spec trained at that point) for each grid point; [({}, model_spec)] without a grid."""
    search = getattr(model_spec, "search", None)
    if search is None:
        return [({}, model_spec)]
    out = []
    for point in grid_points(search):
        params = type(model_spec.params).model_validate({**model_spec.params.model_dump(), **point})
        out.append((point, model_spec.model_copy(update={"params": params, "search": None})))
    return out
