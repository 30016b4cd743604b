"""Same-run baselines a recommender must beat: popularity, item co-occurrence, EASE.

A model is only worth shipping if it beats simple baselines fitted on the same split,
so these share one small interface with the real models: `fit(train)` on a users x
items CSR of positive interactions, `scores(users)` as a dense (len(users), n_items)
array over the full catalogue, and `recommend(users, k, seen)` through the same
seen-excluding top-K as the evaluator. Scores are computed per chunk of users.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from pipeline.recsys.metrics import top_k_excluding_seen

Normalize = Literal["none", "cosine"]


class ItemScorer:
    """Base for models that score every item for a user from the user's training history."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._history: sp.csr_matrix | None = None

    @property
    def n_items(self) -> int:
        return self.history.shape[1]

    @property
    def history(self) -> sp.csr_matrix:
        """The 0/1 users x items training matrix the scores are computed from."""
        if self._history is None:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(train) first.")
        return self._history

    def fit(self, train: sp.csr_matrix) -> Self:
        """Learn from a users x items matrix of positive interaction counts."""
        counts = sp.csr_matrix(train, dtype=np.float64)
        if counts.nnz and counts.data.min() < 0:
            raise ValueError("train must hold non-negative interaction counts.")
        binary = counts.copy()
        binary.eliminate_zeros()
        binary.data[:] = 1.0
        self._history = binary
        self._fit(counts, binary)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Dense (len(users), n_items) scores over the full catalogue; higher is better."""
        _ = self.history  # refuses an unfitted model
        return self._scores(np.asarray(users, dtype=np.int64))

    def recommend(self, users: np.ndarray, k: int, seen: sp.csr_matrix, chunk: int | None = None) -> np.ndarray:
        """Top-k item indices per user with `seen` items excluded (-1 pads short lists)."""
        return top_k_excluding_seen(self.scores, seen, k, chunk, users=np.asarray(users, dtype=np.int64))

    def _fit(self, counts: sp.csr_matrix, binary: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _scores(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Popularity(ItemScorer):
    """Number of positive training interactions per item, the same list for everyone."""

    name = "popularity"

    def _fit(self, counts: sp.csr_matrix, binary: sp.csr_matrix) -> None:
        self.item_counts = np.asarray(counts.sum(axis=0)).ravel()

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_counts, (len(users), len(self.item_counts))).copy()


class CoOccurrence(ItemScorer):
    """Item-item co-occurrence: score(u, j) = sum over the user's items i of C[i, j].

    C = X^T X on the 0/1 user x item matrix with the diagonal removed (an item does not
    recommend itself). normalize="cosine" divides C[i, j] by sqrt(n_i n_j) so that very
    popular items do not dominate every list.
    """

    name = "cooccurrence"

    def __init__(self, normalize: Normalize = "none") -> None:
        super().__init__()
        if normalize not in ("none", "cosine"):
            raise ValueError(f"normalize must be 'none' or 'cosine', got {normalize!r}.")
        self.normalize = normalize

    def _fit(self, counts: sp.csr_matrix, binary: sp.csr_matrix) -> None:
        gram = sp.csr_matrix(binary.T @ binary)
        item_users = gram.diagonal()
        gram.setdiag(0)
        gram.eliminate_zeros()
        if self.normalize == "cosine":
            scale = sp.diags(1.0 / np.sqrt(np.maximum(item_users, 1.0)))
            gram = sp.csr_matrix(scale @ gram @ scale)
        self.cooccurrence = gram

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.history[users] @ self.cooccurrence).toarray())


EASE_MAX_ITEMS = 20_000
"""The largest catalogue EASE accepts by default: it holds two dense items x items arrays (~6 GiB at 20k items)."""


class Ease(ItemScorer):
    """EASE (Steck 2019): the closed-form linear item-item model with a zero diagonal.

    B = I - P diag(1 / diag(P)), P = (X^T X + lambda I)^-1. The inverse is dense
    (n_items^2 floats, twice), so catalogues above `max_items` are refused.
    """

    name = "ease"

    def __init__(self, lam: float = 100.0, max_items: int = EASE_MAX_ITEMS) -> None:
        super().__init__()
        if lam <= 0:
            raise ValueError(f"lam must be positive, got {lam}.")
        self.lam = float(lam)
        self.max_items = max_items

    def _fit(self, counts: sp.csr_matrix, binary: sp.csr_matrix) -> None:
        n = binary.shape[1]
        if n > self.max_items:
            gib = 2 * n * n * 8 / 2**30
            raise ValueError(
                f"EASE needs a dense {n} x {n} inverse (~{gib:.1f} GiB); the catalogue has {n} items, above "
                f"max_items={self.max_items}. Use co-occurrence, or raise max_items if the memory is there."
            )
        gram = np.asarray((binary.T @ binary).toarray(), dtype=np.float64)
        gram[np.diag_indices(n)] += self.lam
        factor = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
        inverse = scipy.linalg.cho_solve(factor, np.eye(n), overwrite_b=True, check_finite=False)
        weights = -inverse / np.diag(inverse)[None, :]
        weights[np.diag_indices(n)] = 0.0
        self.weights = weights

    @property
    def weights(self) -> np.ndarray:
        """The items x items weights, always C-ordered: cho_solve hands back a Fortran-ordered inverse (and
        np.load keeps that order), and a sparse history row times a Fortran-ordered matrix took ~600 ms per
        user at 9k items against ~1.5 ms C-ordered (same numbers), which timed EASE out of /recommend."""
        return self._weights

    @weights.setter
    def weights(self, value: np.ndarray) -> None:
        self._weights = np.ascontiguousarray(value)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.history[users] @ self.weights)


BASELINES: dict[str, type[ItemScorer]] = {cls.name: cls for cls in (Popularity, CoOccurrence, Ease)}
