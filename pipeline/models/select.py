"""Choose among candidate model specs by stratified K-fold cross-validation on the training split.

Selection uses only training data, so the test split stays an unbiased estimate of the
winner. Boosted trees are not assumed to win: on small or near-linear data a regularised
logistic model often generalises better, and the table shows by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from pipeline.metrics.classification import CLASSIFICATION_METRICS, classification_metrics
from pipeline.models.registry import build_model
from pipeline.spec.catalog import metric_info
from pipeline.spec.schema import LightGBMModel, LogisticModel

CandidateSpec = LightGBMModel | LogisticModel


@dataclass
class Selection:
    """The winner (index into the candidates, declared order) and every candidate's scores."""

    index: int
    spec: CandidateSpec
    metric: str
    higher_is_better: bool
    table: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_score(self) -> float:
        return float(self.table[self.index]["mean"])


def select_model(
    candidates: list[CandidateSpec],
    train: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    folds: int,
    seed: int,
    threshold: float = 0.5,
    k: int = 100,
) -> Selection:
    """Cross-validate each candidate on the same folds; ties go to the earlier candidate.

    Each candidate sees only its own features of `train`. Early stopping is not used inside
    the folds (the held-out fold must not steer training), so LightGBM runs all its rounds.
    """
    if not candidates:
        raise ValueError("select_model needs at least one candidate.")
    info = metric_info(metric, "binary_classification")
    if info is None or metric not in CLASSIFICATION_METRICS:
        raise ValueError(f"metric {metric!r} cannot select a model; use one of {', '.join(CLASSIFICATION_METRICS)}.")
    labels = np.asarray(y)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    splits = list(splitter.split(np.zeros(len(labels)), labels))
    table = []
    for position, spec in enumerate(candidates):
        frame = train.loc[:, list(spec.features)]
        scores = []
        for fit_rows, held_rows in splits:
            model = build_model(spec, seed=seed).fit(frame.iloc[fit_rows], labels[fit_rows])
            p = model.predict_proba(frame.iloc[held_rows])
            scores.append(classification_metrics(labels[held_rows], p, threshold, k)[metric])
        finite = [s for s in scores if not math.isnan(s)]
        table.append(
            {
                "candidate": position,
                "family": spec.family,
                "mean": float(np.mean(finite)) if finite else math.nan,
                "std": float(np.std(finite)) if finite else math.nan,
                "folds": [float(s) for s in scores],
            }
        )
    winner = _best(table, info.higher_is_better)
    for row in table:
        row["selected"] = row["candidate"] == winner
    return Selection(winner, candidates[winner], metric, info.higher_is_better, table)


def _best(table: list[dict[str, Any]], higher_is_better: bool) -> int:
    """Index of the best finite mean (NaN never wins; all NaN: the first candidate)."""
    best = 0
    best_value = math.nan
    for row in table:
        value = row["mean"]
        if math.isnan(value):
            continue
        if math.isnan(best_value) or (value > best_value if higher_is_better else value < best_value):
            best, best_value = row["candidate"], value
    return best
