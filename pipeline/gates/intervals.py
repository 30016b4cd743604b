"""The evidence behind each metric gate: an interval and the rows/positives it rests on.

One code path for every classification metric: the test rows are resampled (a seeded
percentile bootstrap, the fairness module's `interval`) and every metric of
`classification_metrics` is computed on each replicate (from its row counts, all replicates
at once: pipeline/metrics/resampled.py), so AUC, PR-AUC, Brier, precision@k... all get their
interval the same way, whatever their formula. With `source: cv` a gate reads the selected model's
cross-validation instead: the folds' mean, and for the selection metric (whose per-fold values
the selection keeps) a t interval over the folds. docs/adr/0027-gates-that-know-their-evidence.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from pipeline.fairness.bootstrap import interval
from pipeline.gates.evaluate import Evidence
from pipeline.metrics.classification import classification_metrics
from pipeline.metrics.resampled import draw_counts, resampled_metrics


def classification_evidence(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    top_k: int,
    *,
    replicates: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Evidence]:
    """metric -> Evidence on these rows: percentile bootstrap interval, rows, positives."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n, positives = len(y), int(y.sum())
    draws: dict[str, np.ndarray] = {}
    if replicates and n:
        counts = draw_counts(np.random.default_rng([seed, 26]), n, replicates)
        draws = resampled_metrics(y, p, threshold, top_k, counts)
    method = f"bootstrap of the {n:,} test rows ({replicates} replicates, {confidence:.0%})" if draws else ""
    names = draws or classification_metrics(y[:0], p[:0], threshold, top_k)
    out = {}
    for name in names:
        low, high = interval(np.asarray(draws[name]), confidence) if name in draws else (None, None)
        out[name] = Evidence(low=low, high=high, rows=n, positives=positives, method=method)
    return out


def cv_evidence(
    selection: Sequence[Mapping[str, Any]], train_rows: int | None, confidence: float = 0.95
) -> dict[str, Evidence]:
    """metric -> Evidence of the selected candidate's cross-validation (its `value` the folds' mean).

    The selection metric has its per-fold values: a t interval (k - 1 degrees of freedom) over them.
    The other metrics have only their mean over the folds: no interval.
    """
    chosen = next((r for r in selection if r.get("selected")), None)
    if chosen is None:
        return {}
    folds = [float(v) for v in chosen.get("folds", []) if v is not None and math.isfinite(float(v))]
    k = len(chosen.get("folds", []))
    out: dict[str, Evidence] = {}
    method = f"mean of {k} CV folds of the training split"
    for name, mean in (chosen.get("metrics") or {}).items():
        if isinstance(mean, int | float) and math.isfinite(float(mean)):
            out[name] = Evidence(rows=train_rows, method=method, value=float(mean))
    metric = chosen.get("metric")
    if metric and folds:
        mean = float(np.mean(folds))
        low = high = None
        if len(folds) >= 2:
            half = (
                stats.t.ppf(0.5 + confidence / 2, len(folds) - 1) * float(np.std(folds, ddof=1)) / math.sqrt(len(folds))
            )
            low, high = mean - half, mean + half
        out[metric] = Evidence(low=low, high=high, rows=train_rows, method=f"{method}, t interval", value=mean)
    return out
