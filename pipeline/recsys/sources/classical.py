"""Classical retrieval sources: popularity, co-occurrence, item-kNN and EASE.

Each is also a same-run baseline: the report puts its metrics beside Keel's system on the
same users, and a `vs: baseline` gate can name it (docs/adr/0028-real-interaction-logs.md).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.recsys.baselines import EASE_MAX_ITEMS, CoOccurrence, Ease, ItemScorer, Popularity
from pipeline.recsys.candidates import cooccurrence_top_k, popularity_top_k
from pipeline.recsys.sources.base import ScorerSource, register


@register("popularity")
class PopularitySource(ScorerSource):
    """Most positive training interactions first (everyone gets the same order)."""

    name = "popularity"

    def __init__(self) -> None:
        super().__init__(Popularity())

    def top_k(self, users: np.ndarray, k: int, seen: sp.csr_matrix) -> np.ndarray:
        assert isinstance(self.scorer, Popularity)
        return popularity_top_k(self.scorer, users, k, seen)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        assert isinstance(self.scorer, Popularity)
        return np.asarray(self.scorer.item_counts, dtype=np.float64)[np.asarray(items, dtype=np.int64)]


@register("cooccurrence")
class CoOccurrenceSource(ScorerSource):
    """Item co-occurrence with the user's history (normalize: none or cosine)."""

    name = "cooccurrence"

    def __init__(self, normalize: str = "none") -> None:
        super().__init__(CoOccurrence(normalize))  # type: ignore[arg-type]

    def top_k(self, users: np.ndarray, k: int, seen: sp.csr_matrix) -> np.ndarray:
        assert isinstance(self.scorer, CoOccurrence)
        return cooccurrence_top_k(self.scorer, users, k, seen, fill=False)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        assert isinstance(self.scorer, CoOccurrence)
        scores = self.scorer.history[np.asarray(users, dtype=np.int64)].multiply(
            self.scorer.cooccurrence.T[np.asarray(items, dtype=np.int64)]
        )
        return np.asarray(scores.sum(axis=1), dtype=np.float64).ravel()


class ItemKNN(ItemScorer):
    """Item-based k-nearest neighbours: cosine similarity of item columns (with shrinkage), each item
    keeping its `neighbours` most similar items; score(u, j) = sum over the user's items of sim(i, j)."""

    name = "item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        super().__init__()
        if neighbours < 1 or shrink < 0:
            raise ValueError(f"neighbours must be >= 1 and shrink >= 0, got {neighbours}, {shrink}.")
        self.neighbours = int(neighbours)
        self.shrink = float(shrink)

    def _fit(self, counts: sp.csr_matrix, binary: sp.csr_matrix) -> None:
        gram = sp.csr_matrix(binary.T @ binary, dtype=np.float64)
        norms = np.sqrt(np.maximum(gram.diagonal(), 0.0))
        gram.setdiag(0)
        gram.eliminate_zeros()
        coo = gram.tocoo()
        sim = coo.data / (norms[coo.row] * norms[coo.col] + self.shrink + 1e-12)
        gram = sp.csr_matrix((sim, (coo.row, coo.col)), shape=gram.shape)
        self.similarity = _top_per_row(gram, self.neighbours).T.tocsr()  # column j: i's top neighbours include j

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.history[users] @ self.similarity).toarray())


def _top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep each row's k largest entries."""
    matrix = sp.csr_matrix(matrix)
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= k:
        return matrix
    row = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((-matrix.data, row))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], counts)
    keep = order[rank < k]
    return sp.csr_matrix((matrix.data[keep], (row[keep], matrix.indices[keep])), shape=matrix.shape)


@register("item_knn")
class ItemKNNSource(ScorerSource):
    name = "item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        super().__init__(ItemKNN(neighbours, shrink))


@register("ease")
class EaseSource(ScorerSource):
    """EASE (closed-form item-item); `lam` the L2 penalty; refuses catalogues above max_items."""

    name = "ease"

    def __init__(self, lam: float = 100.0, max_items: int = EASE_MAX_ITEMS) -> None:
        super().__init__(Ease(lam, max_items))
