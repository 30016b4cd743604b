"""Average treatment effect estimators from logged data with the logging policy's propensities.

- naive: mean outcome of the treated minus the untreated (confounded when the policy
  treats units that would have done well anyway);
- ipw: Horvitz-Thompson inverse propensity weighting;
- snipw: self-normalised (Hajek) IPW, lower variance when propensities are small;
- dr: augmented IPW (doubly robust): an outcome model per arm plus the IPW-weighted
  residuals; consistent when either the propensities or the outcome model are right.

Each estimate is a ratio of per-row sums, so the bootstrap is vectorised over resampling
counts. The DR outcome models are fitted once and held fixed across replicates (the
interval reflects sampling of the rows, not refitting; with known propensities the
residual term already corrects any outcome-model error).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.fairness.bootstrap import interval, resample_counts, safe_ratio

ESTIMATORS = ("naive", "ipw", "snipw", "dr")


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def outcome_predictions(x: np.ndarray, t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu0, mu1): each row's predicted outcome untreated and treated, from one model per arm."""
    binary = np.isin(y, (0.0, 1.0)).all()
    out = []
    for arm in (0, 1):
        rows = t == arm
        if x.shape[1] == 0 or (binary and len(np.unique(y[rows])) < 2):
            out.append(np.full(len(y), y[rows].mean()))
            continue
        if binary:
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
            model.fit(x[rows], y[rows])
            out.append(model.predict_proba(x)[:, 1])
        else:
            model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
            model.fit(x[rows], y[rows])
            out.append(model.predict(x))
    return out[0], out[1]


def _columns(t: np.ndarray, y: np.ndarray, e: np.ndarray, mu0: np.ndarray, mu1: np.ndarray) -> np.ndarray:
    """Per-row terms whose (resampled) sums give every estimator."""
    w1, w0 = t / e, (1 - t) / (1 - e)
    dr = mu1 - mu0 + w1 * (y - mu1) - w0 * (y - mu0)
    return np.stack([t * y, t, (1 - t) * y, 1 - t, w1 * y, w1, w0 * y, w0, dr, np.ones(len(t))], axis=1)


def _estimates(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Estimator values from (r, 10) column sums (see _columns)."""
    n = sums[:, 9]
    return {
        "naive": safe_ratio(sums[:, 0], sums[:, 1]) - safe_ratio(sums[:, 2], sums[:, 3]),
        "ipw": safe_ratio(sums[:, 4] - sums[:, 6], n),
        "snipw": safe_ratio(sums[:, 4], sums[:, 5]) - safe_ratio(sums[:, 6], sums[:, 7]),
        "dr": safe_ratio(sums[:, 8], n),
    }


def estimate_effects(
    t: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    covariates: pd.DataFrame | None = None,
    *,
    estimators: tuple[str, ...] | list[str] = ESTIMATORS,
    clip: float = 0.01,
    replicates: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Each requested estimator's ATE with a percentile bootstrap interval (None without replicates)."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    e = np.clip(np.asarray(propensity, dtype=np.float64), clip, 1 - clip)
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("the treatment column must hold only 0/1.")
    if not (np.isfinite(y).all() and np.isfinite(e).all()):
        raise ValueError("outcome and propensity must be finite (no missing values).")
    x = _design(covariates, len(t))
    mu0, mu1 = outcome_predictions(x, t, y) if "dr" in estimators else (np.zeros(len(t)), np.zeros(len(t)))
    columns = _columns(t, y, e, mu0, mu1)
    point = _estimates(columns.sum(axis=0)[None, :])
    rng = np.random.default_rng([seed, 25])
    reps = [_estimates(c @ columns) for c in resample_counts(len(t), replicates, rng)]
    out = {}
    for name in estimators:
        values = np.concatenate([r[name] for r in reps]) if reps else np.empty(0)
        low, high = interval(values, confidence) if reps else (None, None)
        out[name] = Estimate(name, float(point[name][0]), low, high)
    return out


def _design(covariates: pd.DataFrame | None, n: int) -> np.ndarray:
    """Numeric covariates as they are, categoricals one-hot (first level dropped)."""
    if covariates is None or covariates.shape[1] == 0:
        return np.zeros((n, 0))
    frame = pd.get_dummies(covariates, drop_first=True, dummy_na=False)
    return frame.to_numpy(dtype=np.float64)
