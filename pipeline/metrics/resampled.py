"""Classification metrics of many bootstrap replicates at once, from row counts.

A bootstrap replicate of n rows drawn with replacement is the original rows with a count each
(how often each was drawn). Every metric in CLASSIFICATION_METRICS is a weighted sum over the
rows sorted once by probability, so the replicates are rows of a count matrix and the metrics
are a few array operations on it: no per-replicate sort and no per-call validation. On the
start-up run of `keel run` (528 test rows, 200 replicates) this takes ~20 ms where recomputing
`classification_metrics` per replicate took ~0.5 s; on 250k test rows it avoids 600 sorts.

Equal to `classification_metrics` on the resampled rows up to float rounding, ties included
(AUC as Mann-Whitney with half credit for ties, PR-AUC as scikit-learn's step sum over distinct
thresholds), except one convention: precision_at_k breaks ties in probability by original row
order, as the point estimate does, where the resampled array would break them by draw order.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.metrics.classification import CLASSIFICATION_METRICS, _check

_EPS = 1e-15
_CELLS_PER_CHUNK = 1 << 22  # replicates x rows per block of work: ~32 MB of float64


def draw_counts(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    """(replicates, n): replicate r drew row i counts[r, i] times (rng.integers once per replicate)."""
    counts = np.empty((replicates, n), dtype=np.int32)
    for r in range(replicates):
        counts[r] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    return counts


def resampled_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, k: int, counts: np.ndarray
) -> dict[str, np.ndarray]:
    """metric -> array of its value on each replicate (a row of `counts`); NaN where undefined."""
    labels, probs = _check(y, p)
    counts = np.atleast_2d(np.asarray(counts))
    n = len(labels)
    if n == 0 or counts.shape[0] == 0:
        return {name: np.full(counts.shape[0], math.nan) for name in CLASSIFICATION_METRICS}
    order = np.lexsort((np.arange(n), -probs))  # probability descending, then row order
    y_sorted, p_sorted = labels[order], probs[order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])  # first row of each tie group
    rows = _RowTerms(labels, probs, threshold)
    chunk = max(1, _CELLS_PER_CHUNK // n)
    parts = [
        _block(counts[i : i + chunk], order, y_sorted, starts, rows, min(k, n), n)
        for i in range(0, counts.shape[0], chunk)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in CLASSIFICATION_METRICS}


class _RowTerms:
    """Per-row terms of the metrics that are plain (weighted) means."""

    def __init__(self, labels: np.ndarray, probs: np.ndarray, threshold: float) -> None:
        clipped = np.clip(probs, _EPS, 1 - _EPS)
        self.labels = labels
        self.log_loss = -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
        self.brier = (probs - labels) ** 2
        self.flagged = (probs >= threshold).astype(np.float64)
        self.correct = (self.flagged == labels).astype(np.float64)
        self.hits = self.flagged * labels


def _block(
    counts: np.ndarray,
    order: np.ndarray,
    y_sorted: np.ndarray,
    starts: np.ndarray,
    rows: _RowTerms,
    top: int,
    n: int,
) -> dict[str, np.ndarray]:
    w = counts.astype(np.float64)
    positives = w @ rows.labels
    negatives = n - positives
    flagged = w @ rows.flagged
    hits = w @ rows.hits
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(flagged > 0, hits / flagged, 0.0)
        recall = np.where(positives > 0, hits / positives, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    ws = w[:, order]
    pos_g = np.add.reduceat(ws * y_sorted, starts, axis=1)  # positives per tie group, descending probability
    neg_g = np.add.reduceat(ws, starts, axis=1) - pos_g
    tps, fps = np.cumsum(pos_g, axis=1), np.cumsum(neg_g, axis=1)
    two_classes = (positives > 0) & (negatives > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = negatives[:, None] - fps  # negatives strictly less likely than the group
        auc = np.sum(pos_g * (below + 0.5 * neg_g), axis=1) / (positives * negatives)
        step_precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) > 0)
        pr_auc = np.sum(pos_g * step_precision, axis=1) / positives
    taken = np.clip(top - (np.cumsum(ws, axis=1) - ws), 0, ws)  # the first `top` drawn rows in that order
    return {
        "auc": np.where(two_classes, auc, math.nan),
        "pr_auc": np.where(two_classes, pr_auc, math.nan),
        "log_loss": (w @ rows.log_loss) / n,
        "brier": (w @ rows.brier) / n,
        "accuracy": (w @ rows.correct) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "precision_at_k": (taken @ y_sorted) / top if top else np.full(len(w), math.nan),
        "flagged_share": flagged / n,
    }
