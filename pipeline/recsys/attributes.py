"""Item attributes as the spec declares them (`data.items.attributes`), encoded once per item table.

Nothing in the recommender knows a column by name: the spec says which item columns are
categorical, numeric, timestamps or multi-valued (with a delimiter), and every consumer (the
ranking features, the re-ranker, cold start, creator fairness groups) reads them from here
(docs/adr/0033-item-attributes.md).

A multi-valued attribute ("Action|Comedy") is kept as an items x values 0/1 matrix; where one
value per item is needed (the re-ranker's diversity, exposure floors) its first listed value
stands for the item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

KINDS = ("categorical", "numeric", "timestamp", "multi")


@dataclass(frozen=True)
class Attribute:
    """One declared item column: its kind and, for `multi`, the separator of its values."""

    name: str
    type: str
    delimiter: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "delimiter": self.delimiter}


def declared(spec: Any) -> dict[str, Attribute]:
    """The spec's `data.items.attributes` (empty without an item table or declarations)."""
    items = getattr(spec.data, "items", None)
    attributes = getattr(items, "attributes", None) or {}
    return {name: Attribute(name, a.type, a.delimiter) for name, a in attributes.items()}


def from_json(info: Mapping[str, Mapping[str, Any]]) -> dict[str, Attribute]:
    return {name: Attribute(name, a["type"], a.get("delimiter")) for name, a in info.items()}


def to_json(attributes: Mapping[str, Attribute]) -> dict[str, dict[str, Any]]:
    return {name: a.to_json() for name, a in attributes.items()}


def attribute_features(attributes: Mapping[str, Attribute], user_columns: Sequence[str] = ()) -> dict[str, tuple]:
    """Feature name -> (kind, attribute, description) for the declared item attributes.

    `user_columns`: the user table's columns; a categorical attribute the user table also has
    gives `user_A` (the user's value) and `same_A` (1 when user and item agree).
    """
    out: dict[str, tuple] = {}
    for name, a in attributes.items():
        if a.type == "categorical":
            out[f"item_{name}"] = ("item_code", name, f"the item's {name} (categorical)")
            if name in user_columns:
                out[f"user_{name}"] = ("user_code", name, f"the user's {name} (categorical)")
                out[f"same_{name}"] = ("same", name, f"1 when the user's and the item's {name} agree, NaN if unknown")
            out[f"user_{name}_affinity"] = (
                "affinity",
                name,
                f"share of the user's training positives in the item's {name}",
            )
        elif a.type == "multi":
            out[f"user_{name}_affinity"] = (
                "multi_affinity",
                name,
                f"mean over the item's {name} values of the share of the user's training positives with that value",
            )
        elif a.type == "numeric":
            out[f"item_{name}"] = ("numeric", name, f"the item's {name}")
        else:
            out[f"item_{name}_age_days"] = ("age", name, f"days between the item's {name} and the feature time (as_of)")
    return out


def missing_columns(attributes: Mapping[str, Attribute], items: pd.DataFrame) -> list[str]:
    """Declared attributes the item table does not have."""
    return [name for name in attributes if name not in items.columns]


def codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 missing) and string categories; a Categorical keeps its declared categories."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = pd.Index([str(c) for c in column.cat.categories])
        return column.cat.codes.to_numpy(dtype=np.int64), categories
    present = column.notna().to_numpy()
    text = np.array([str(v) for v in column.to_numpy(dtype=object)[present]], dtype=object)
    categories = pd.Index(sorted(set(text)), dtype=object)
    out = np.full(len(column), -1, dtype=np.int64)
    out[present] = categories.get_indexer(pd.Index(text, dtype=object))
    return out, categories


def split_values(column: pd.Series, delimiter: str) -> list[list[str]]:
    """Each row's values of a multi attribute, in the order written, blanks and repeats dropped."""
    out: list[list[str]] = []
    for value in column.to_numpy(dtype=object):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            out.append([])
            continue
        parts = [p.strip() for p in str(value).split(delimiter)]
        out.append(list(dict.fromkeys(p for p in parts if p)))
    return out


def multi_matrix(column: pd.Series, delimiter: str) -> tuple[sp.csr_matrix, pd.Index]:
    """(items x values 0/1 CSR, value names sorted) of a multi attribute."""
    rows = split_values(column, delimiter)
    categories = pd.Index(sorted({v for row in rows for v in row}), dtype=object)
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    flat = [v for row in rows for v in row]
    cols = categories.get_indexer(pd.Index(flat, dtype=object)) if flat else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(flat)), (np.repeat(np.arange(len(rows)), counts), cols)),
        shape=(len(rows), max(len(categories), 1)),
    )
    return matrix, categories


def one_value(column: pd.Series, attribute: Attribute) -> np.ndarray:
    """One value per item (object array, None when missing): a multi attribute's first listed value."""
    if attribute.type == "multi":
        assert attribute.delimiter is not None
        return np.array([row[0] if row else None for row in split_values(column, attribute.delimiter)], dtype=object)
    values = column.astype(object)
    return values.where(values.notna(), None).to_numpy(dtype=object)
