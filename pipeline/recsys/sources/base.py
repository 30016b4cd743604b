"""One small protocol for every retrieval source, and the registry of source types.

A source is fitted on the training history (users x items CSR of positive interactions),
returns each user's top-k items with seen items excluded, and scores given (user, item)
pairs, so the ranker can see every source's opinion of every candidate. `retrieval.sources`
in a spec names sources by `type` (registered here with `@register`) with their params.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from pipeline.recsys.baselines import ItemScorer

SCORE_CHUNK = 2048  # users per dense score block


@runtime_checkable
class CandidateSource(Protocol):
    """fit on history -> top_k for users (seen excluded, -1 padded) -> score given pairs."""

    name: str

    def fit(self, history: sp.csr_matrix) -> CandidateSource: ...

    def top_k(self, users: np.ndarray, k: int, seen: sp.csr_matrix) -> np.ndarray: ...

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...


SourceFactory = Callable[..., CandidateSource]
SOURCE_TYPES: dict[str, SourceFactory] = {}


def register(type_name: str) -> Callable[[SourceFactory], SourceFactory]:
    def add(factory: SourceFactory) -> SourceFactory:
        SOURCE_TYPES[type_name] = factory
        return factory

    return add


def make_source(type_name: str, params: dict[str, Any] | None = None, **context: Any) -> CandidateSource:
    """A fresh (unfitted) source of a registered type; unknown params are an error, not ignored."""
    if type_name not in SOURCE_TYPES:
        raise ValueError(f"unknown retrieval source type {type_name!r}; known: {', '.join(sorted(SOURCE_TYPES))}.")
    try:
        return SOURCE_TYPES[type_name](**(params or {}), **context)
    except TypeError as exc:
        raise ValueError(f"retrieval source {type_name!r}: {exc}") from None


class ScorerSource:
    """A source over an ItemScorer (dense user x catalogue scores, computed in chunks)."""

    name = "scorer"

    def __init__(self, scorer: ItemScorer) -> None:
        self.scorer = scorer

    def fit(self, history: sp.csr_matrix) -> ScorerSource:
        self.scorer.fit(history)
        return self

    def top_k(self, users: np.ndarray, k: int, seen: sp.csr_matrix) -> np.ndarray:
        """Top-k by score; a user without history gets nothing (all scores 0 would list the catalogue in order)."""
        users = np.asarray(users, dtype=np.int64)
        out = self.scorer.recommend(users, k, seen)
        out[np.diff(self.scorer.history.indptr)[users] == 0] = -1
        return out

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return score_pairs(self.scorer.scores, users, items)


def score_pairs(scores: Callable[[np.ndarray], np.ndarray], users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Pair scores from a dense `scores(users) -> (n, n_items)` function, one block of distinct users at a time."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    out = np.zeros(len(users), dtype=np.float64)
    distinct, inverse = np.unique(users, return_inverse=True)
    for start in range(0, len(distinct), SCORE_CHUNK):
        block = distinct[start : start + SCORE_CHUNK]
        dense = np.asarray(scores(block), dtype=np.float64)
        rows = (inverse >= start) & (inverse < start + len(block))
        out[rows] = dense[inverse[rows] - start, items[rows]]
    return out
