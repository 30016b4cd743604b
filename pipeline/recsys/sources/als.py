"""ALS (implicit-feedback matrix factorisation, Hu et al. 2008) via the `implicit` library.

`implicit` is a recsys extra (pyproject `recsys`, pinned in constraints.txt); a spec that
names an `als` source without it installed gets one clear error, not an import trace.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pipeline.recsys.baselines import ItemScorer
from pipeline.recsys.sources.base import ScorerSource, register


class ALS(ItemScorer):
    """Confidence 1 + alpha * count on the positives; user and item factors by alternating least squares."""

    name = "als"

    def __init__(
        self, factors: int = 64, regularization: float = 0.05, iterations: int = 15, alpha: float = 2.0, seed: int = 0
    ) -> None:
        super().__init__()
        self.factors, self.regularization, self.iterations = int(factors), float(regularization), int(iterations)
        self.alpha, self.seed = float(alpha), int(seed)

    def _fit(self, counts: sp.csr_matrix, binary: sp.csr_matrix) -> None:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as exc:  # pragma: no cover - the recsys extra installs it
            raise ValueError("the `als` source needs the `implicit` package (pip install -e '.[recsys]')") from exc
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; a threaded BLAS under it slows it down
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            model.fit(sp.csr_matrix(counts, dtype=np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T


@register("als")
class ALSSource(ScorerSource):
    name = "als"

    def __init__(
        self, factors: int = 64, regularization: float = 0.05, iterations: int = 15, alpha: float = 2.0, seed: int = 0
    ) -> None:
        super().__init__(ALS(factors, regularization, iterations, alpha, seed))
