"""Binary classification metrics under the names the spec catalogue uses.

Gates and reports read these by name, so the keys are exactly the catalogue's. Every
function is total: a test slice with a single class (a small segment, a quiet week)
yields NaN for the rank metrics instead of an exception, so one empty group cannot
crash an evaluation run; threshold metrics follow scikit-learn's zero_division=0.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

CLASSIFICATION_METRICS = (
    "auc",
    "pr_auc",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_at_k",
    "flagged_share",
)
_EPS = 1e-15


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float, k: int) -> dict[str, float]:
    """All CLASSIFICATION_METRICS for labels `y` (0/1) and probabilities `p`.

    auc and pr_auc are NaN when `y` holds one class (undefined, not zero); precision is 0 when
    nothing is flagged and recall 0 when there are no positives (zero_division=0); every metric
    is NaN for empty input. precision_at_k uses the top min(k, n) rows, ties broken by row order.
    """
    labels, probs = _check(y, p)
    n = len(labels)
    if n == 0:
        return {name: math.nan for name in CLASSIFICATION_METRICS}
    two_classes = 0 < labels.sum() < n
    flagged = probs >= threshold
    tp = float(np.sum(flagged & (labels == 1)))
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / labels.sum() if labels.any() else 0.0
    clipped = np.clip(probs, _EPS, 1 - _EPS)
    top = np.argsort(-probs, kind="stable")[: max(0, min(k, n))]
    return {
        "auc": float(roc_auc_score(labels, probs)) if two_classes else math.nan,
        "pr_auc": float(average_precision_score(labels, probs)) if two_classes else math.nan,
        "log_loss": float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))),
        "brier": float(np.mean((probs - labels) ** 2)),
        "accuracy": float(np.mean(flagged == (labels == 1))),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0,
        "precision_at_k": float(labels[top].mean()) if len(top) else math.nan,
        "flagged_share": float(flagged.mean()),
    }


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width probability bins over [0, 1]; empty bins are left out. p == 1 falls in the last bin."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}.")
    labels, probs = _check(y, p)
    index = np.minimum((probs * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        if count == 0:
            continue
        rows.append(
            {
                "bin": b + 1,
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "mean_predicted": float(probs[mask].mean()),
                "observed_rate": float(labels[mask].mean()),
                "count": count,
            }
        )
    return rows


def lift_by_decile(y: np.ndarray, p: np.ndarray) -> list[dict[str, float]]:
    """Deciles by descending score (decile 1 = highest); lift is rate / overall rate.

    Deciles are near-equal row counts (ties broken by row order); with fewer than 10 rows the
    empty deciles are left out. Lift and capture are NaN when there are no positives at all.
    """
    labels, probs = _check(y, p)
    order = np.argsort(-probs, kind="stable")
    total_positives = float(labels.sum())
    overall = total_positives / len(labels) if len(labels) else math.nan
    rows = []
    captured = 0.0
    for decile, chunk in enumerate(np.array_split(order, 10), start=1):
        if len(chunk) == 0:
            continue
        positives = float(labels[chunk].sum())
        captured += positives
        rate = positives / len(chunk)
        rows.append(
            {
                "decile": decile,
                "count": len(chunk),
                "positives": int(positives),
                "rate": rate,
                "lift": rate / overall if overall > 0 else math.nan,
                "cumulative_capture": captured / total_positives if total_positives > 0 else math.nan,
                "min_score": float(probs[chunk].min()),
                "max_score": float(probs[chunk].max()),
            }
        )
    return rows


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 floats and probabilities as floats in [0, 1], of one length."""
    labels = np.asarray(y)
    probs = np.asarray(p, dtype=np.float64)
    if labels.ndim != 1 or probs.ndim != 1 or len(labels) != len(probs):
        raise ValueError(f"y and p must be 1-D of one length; got shapes {labels.shape} and {probs.shape}.")
    labels = labels.astype(np.float64)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("y must hold only 0/1 (or boolean) labels.")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0.0) < 0 or probs.max(initial=0.0) > 1:
        raise ValueError("p must hold finite probabilities in [0, 1].")
    return labels, probs
