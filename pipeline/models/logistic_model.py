"""Logistic regression: the lightweight real-time model.

Fitted with scikit-learn on a standardised design (median-imputed numerics and one-hot
categories, every column scaled), then reduced to plain arrays. Scoring and saving use
only those arrays, so a loaded model is a few dot products with no sklearn object behind
it, and the JSON it is saved as is readable and safe to load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from pipeline.models.base import TabularModel
from pipeline.models.errors import ModelFormatError
from pipeline.spec.schema import LogisticParams

COEF_FILE = "logistic.json"
ONE_THREAD_BELOW_ROWS = 20_000


class LogisticTabularModel(TabularModel):
    """Contributions are coef * standardised value, one-hot columns summed per original feature."""

    family = "logistic"

    def __init__(self, features: list[str], params: LogisticParams | None = None, seed: int = 0) -> None:
        super().__init__(features)
        self.params = params or LogisticParams()
        self.seed = seed
        self.medians: dict[str, float] = {}
        self.coef: np.ndarray | None = None  # one per design column
        self.intercept = 0.0
        self.means: np.ndarray | None = None
        self.scales: np.ndarray | None = None

    def design_columns(self) -> list[tuple[str, str | None]]:
        """(feature, level) per design column; level None for a numeric feature."""
        columns: list[tuple[str, str | None]] = []
        for name in self.features:
            levels = self._kinds()[name]
            columns += [(name, None)] if levels is None else [(name, level) for level in levels]
        return columns

    def _design(self, x: pd.DataFrame) -> np.ndarray:
        """Unscaled design matrix: imputed numerics, 0/1 one-hots (missing or unseen: all zeros)."""
        blocks = []
        for name in self.features:
            column = x[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                codes = column.cat.codes.to_numpy()
                onehot = np.zeros((len(x), len(column.cat.categories)))
                rows = np.flatnonzero(codes >= 0)
                onehot[rows, codes[rows]] = 1.0
                blocks.append(onehot)
            else:
                values = column.to_numpy(dtype=np.float64)
                blocks.append(np.where(np.isnan(values), self.medians[name], values)[:, None])
        return np.hstack(blocks) if blocks else np.empty((len(x), 0))

    def _standardised(self, x: pd.DataFrame) -> np.ndarray:
        if self.means is None or self.scales is None:
            self._kinds()
            raise ModelFormatError("the logistic model has no coefficients.")
        return (self._design(x) - self.means) / self.scales

    def _fit(self, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        del valid  # a convex fit has no early stopping to drive
        self.medians = {}
        for name in self.features:
            if not isinstance(x[name].dtype, pd.CategoricalDtype):
                median = float(np.nanmedian(x[name])) if x[name].notna().any() else 0.0
                self.medians[name] = median
        design = self._design(x)
        self.means = design.mean(axis=0)
        scales = design.std(axis=0)
        self.scales = np.where(scales > 0, scales, 1.0)
        # A small design fits in milliseconds; BLAS threads then only add their spin-wait (~3x slower on a loaded
        # 2-core box), paid by every fold of every search point. Large designs keep BLAS's own thread count.
        with threadpool_limits(limits=1 if len(design) < ONE_THREAD_BELOW_ROWS else None):
            fitted = LogisticRegression(
                C=self.params.C,
                max_iter=self.params.max_iter,
                class_weight=self.params.class_weight,
                random_state=self.seed,
            ).fit((design - self.means) / self.scales, y)
        self.coef = fitted.coef_[0].astype(np.float64)
        self.intercept = float(fitted.intercept_[0])

    def _log_odds(self, x: pd.DataFrame) -> np.ndarray:
        assert self.coef is not None
        return self._standardised(x) @ self.coef + self.intercept

    def _predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return _sigmoid(self._log_odds(x))

    def _contributions(self, x: pd.DataFrame) -> np.ndarray:
        assert self.coef is not None
        per_column = self._standardised(x) * self.coef
        owner = np.array([self.features.index(name) for name, _ in self.design_columns()])
        out = np.zeros((len(x), len(self.features)))
        for j in range(len(self.features)):
            out[:, j] = per_column[:, owner == j].sum(axis=1)
        return out

    @property
    def expected_value(self) -> float:
        """The intercept: every design column is centred, so an average row scores exactly this."""
        self._kinds()
        return self.intercept

    def _save_files(self, directory: Path) -> list[str]:
        if self.coef is None or self.means is None or self.scales is None:
            self._kinds()
            raise ModelFormatError("the logistic model has no coefficients.")
        payload = {
            "columns": [[name, level] for name, level in self.design_columns()],
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "means": self.means.tolist(),
            "scales": self.scales.tolist(),
            "medians": self.medians,
            "params": self.params.model_dump(),
        }
        (directory / COEF_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return [COEF_FILE]

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any]) -> LogisticTabularModel:
        path = directory / COEF_FILE
        if not path.is_file():
            raise ModelFormatError(f"{directory} lacks {COEF_FILE}.")
        payload = json.loads(path.read_text(encoding="utf-8"))
        model = cls(list(manifest["features"]), LogisticParams(**payload.get("params", {})))
        model.kinds = {name: manifest.get("categorical_levels", {}).get(name) for name in model.features}
        expected = [[name, level] for name, level in model.design_columns()]
        if payload["columns"] != expected:
            raise ModelFormatError(f"{path} columns do not match the features and categories in model.json.")
        model.coef = np.asarray(payload["coef"], dtype=np.float64)
        model.intercept = float(payload["intercept"])
        model.means = np.asarray(payload["means"], dtype=np.float64)
        model.scales = np.asarray(payload["scales"], dtype=np.float64)
        model.medians = {name: float(value) for name, value in payload["medians"].items()}
        return model


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (no overflow warnings for large |z|)."""
    out = np.empty_like(z, dtype=np.float64)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    exp_z = np.exp(z[~positive])
    out[~positive] = exp_z / (1.0 + exp_z)
    return out
