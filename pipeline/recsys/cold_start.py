"""One cold-start policy for batch lists and /recommend (`serving.cold_start`).

A user with fewer than `min_interactions` known positives (or unknown) has no history for
the two-tower, co-occurrence or any other history-based source to work from. Both paths then
answer from the training popularity, within the user's value of a declared categorical item
attribute when the policy is `popular_in` (the user table's column of that name, else the
request's context), topped up with global popularity when that value runs short. No list is
ever filled in catalogue order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.recsys.attributes import Attribute
from pipeline.spec.schema import ColdStartSpec

COLD_SOURCES = ("popularity", "popular_in")  # the `source` a cold list is labelled with (cold_start:<source>)


@dataclass(eq=False)
class ColdStart:
    policy: str
    min_interactions: int
    column: str | None
    popular: np.ndarray  # item indices, most popular first (ties: lower index)
    popular_in: dict[str, np.ndarray]  # attribute value -> its items in popularity order
    user_value: dict[int, str]

    @classmethod
    def build(
        cls,
        spec: ColdStartSpec,
        counts: np.ndarray,
        items: pd.DataFrame,
        users: pd.DataFrame | None,
        attributes: dict[str, Attribute] | None = None,
    ) -> ColdStart:
        """`items` / `users`: rows aligned with the dense item / user indices; `attributes`: the declared ones."""
        counts = np.asarray(counts, dtype=np.float64)
        popular = np.lexsort((np.arange(len(counts)), -counts))
        column = spec.attribute if spec.policy == "popular_in" else None
        if column is not None and (attributes or {}).get(column, Attribute(column, "")).type != "categorical":
            raise ValueError(f"serving.cold_start.attribute {column!r} is not a declared categorical item attribute")
        popular_in: dict[str, np.ndarray] = {}
        if column is not None and column in items.columns:
            values = items[column].astype("string").to_numpy(dtype=object, na_value=None)[popular]
            popular_in = {str(v): popular[values == v] for v in pd.unique(values) if v is not None}
        user_value: dict[int, str] = {}
        if column is not None and users is not None and column in users.columns:
            values = users[column].astype("string").to_numpy(dtype=object, na_value=None)
            user_value = {i: str(v) for i, v in enumerate(values) if v is not None}
        return cls(spec.policy, spec.min_interactions, column, popular, popular_in, user_value)

    def cold(self, seen: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Mask of `users` (dense indices) with fewer known positives than min_interactions."""
        known = np.diff(sp.csr_matrix(seen).indptr)[np.asarray(users, dtype=np.int64)]
        return known < max(self.min_interactions, 1)

    def choose(
        self, u: int | None, k: int, seen: sp.csr_matrix, context: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, str]:
        """(up to k item indices, the source that chose them) for one cold user."""
        order, source = self.popular, "popularity"
        if self.policy == "popular_in" and self.column is not None:
            value = self.user_value.get(u) if u is not None else None
            value = value or (context or {}).get(self.column)
            if value is not None and str(value) in self.popular_in:
                order, source = self.popular_in[str(value)], "popular_in"
        chosen = _minus_seen(u, k, order, seen)
        if len(chosen) < k and order is not self.popular:  # a small group: fill with global popularity
            rest = _minus_seen(u, k + len(chosen), self.popular, seen)
            chosen = np.concatenate([chosen, rest[~np.isin(rest, chosen)]])[:k]
        return chosen, source


def _minus_seen(u: int | None, k: int, order: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """The first k items of `order` the user has not seen (fewer when the catalogue runs out)."""
    mine = seen.indices[seen.indptr[u] : seen.indptr[u + 1]] if u is not None else np.zeros(0, dtype=np.int64)
    head = order[: k + len(mine)]
    return head[~np.isin(head, mine)][:k]
