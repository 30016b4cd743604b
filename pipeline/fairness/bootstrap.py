"""Vectorised, seeded bootstrap: resampling counts as a (replicates x n) matrix, in chunks.

Every statistic here is a ratio of sums, so a replicate is a matrix product of the counts
with per-row arrays; no Python loop over replicates. Chunks bound memory at about
CHUNK_CELLS counts whatever n and the number of replicates.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK_CELLS = 4_000_000


def resample_counts(n: int, replicates: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield (r, n) float matrices of how often each row is drawn; the r's sum to `replicates`."""
    if n == 0 or replicates == 0:
        return
    step = max(1, min(replicates, CHUNK_CELLS // n))
    for start in range(0, replicates, step):
        r = min(step, replicates - start)
        draws = rng.integers(0, n, size=(r, n))
        flat = (np.arange(r)[:, None] * n + draws).ravel()
        yield np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.float64)


def replicate_sums(values: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, m) resampled column sums of an (n, m) array (rows are the resampled units)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    parts = [counts @ values for counts in resample_counts(len(values), replicates, rng)]
    return np.concatenate(parts) if parts else np.empty((0, values.shape[1]))


def interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval of the finite replicates; (None, None) without any."""
    finite = np.asarray(replicates, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with NaN where the denominator is 0 (a replicate that drew no events)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den != 0)
