"""Choose among candidate model specs by stratified K-fold cross-validation on the training split.

Selection uses only training data, so the test split stays an unbiased estimate of the
winner. Each fold trains a candidate the way the final fit will: with the same params and, where
the final fit stops early on the valid part (LightGBM with `early_stopping_rounds`), early stopping
on an inner validation slice of the fold's training rows, never on the held-out fold.
A candidate's `search` grid is cross-validated point by point on those same folds
(docs/adr/0032-parameter-search.md). Boosted trees are not assumed to win: on small or near-linear data a regularised
logistic model often generalises better, and the table shows by how much.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from tqdm import tqdm

from pipeline.metrics.classification import CLASSIFICATION_METRICS, classification_metrics
from pipeline.models.registry import build_model
from pipeline.models.search import configurations
from pipeline.spec.catalog import metric_info
from pipeline.spec.schema import LightGBMModel, LogisticModel

CandidateSpec = LightGBMModel | LogisticModel
# (configurations, train, labels, folds, seed, threshold, k, inner_valid_fraction) -> per configuration, its folds
FoldRunner = Callable[..., list[list[dict[str, Any]]]]


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
    inner_valid_fraction: float | None = None,
    fold_runner: FoldRunner | None = None,
) -> Selection:
    """Cross-validate each candidate on the same folds; ties go to the earlier candidate.

    Each candidate sees only its own features of `train`. `inner_valid_fraction`: the share of
    each fold's training rows held back (stratified) to stop on, as the final fit stops on the
    valid part; None (no valid part) trains every fold on all its rows for all rounds, as the
    final fit does. The held-out fold never steers training. Every row of the table also carries
    the mean of every classification metric (`metrics`), so a sweep can rank on any of them.

    A candidate with a `search` grid is cross-validated at every point on the same folds; its best
    point (ties: the earlier) is its row, with `params` (that point) and `search` (every point's
    mean and std), and the winner's spec is that point's: what the final fit and refit train.
    A progress bar counts the fits when stderr is a terminal.

    `fold_runner` fits the (configuration, fold) pairs: `run_folds_here` by default, or the run's Dask
    cluster (pipeline/distributed/select.py); the table is the same either way.
    """
    if not candidates:
        raise ValueError("select_model needs at least one candidate.")
    info = metric_info(metric, "binary_classification")
    if info is None or metric not in CLASSIFICATION_METRICS:
        raise ValueError(f"metric {metric!r} cannot select a model; use one of {', '.join(CLASSIFICATION_METRICS)}.")
    labels = np.asarray(y)
    grids = [configurations(spec) for spec in candidates]
    configured = [config for grid in grids for _, config in grid]
    results = iter(
        (fold_runner or run_folds_here)(configured, train, labels, folds, seed, threshold, k, inner_valid_fraction)
    )
    table, chosen = [], []
    for position, (spec, grid) in enumerate(zip(candidates, grids, strict=True)):
        rows = []
        for _ in grid:
            rows.append({"candidate": position, "family": spec.family, **_summary(next(results), metric)})
        best = _best(rows, info.higher_is_better)
        row = rows[best]
        if getattr(spec, "search", None) is not None:  # every point with its CV score; the best one competes
            row["params"] = grid[best][0]
            row["search"] = [
                {
                    "params": point,
                    "mean": r["mean"],
                    "std": r["std"],
                    **({"trees": r["trees"]} if "trees" in r else {}),
                }
                for (point, _), r in zip(grid, rows, strict=True)
            ]
        table.append(row)
        chosen.append(grid[best][1])
    winner = _best(table, info.higher_is_better)
    for row in table:
        row["selected"] = row["candidate"] == winner
    return Selection(winner, chosen[winner], metric, info.higher_is_better, table)


def fold_splits(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The stratified folds every configuration is scored on (the same wherever they are computed)."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    return list(splitter.split(np.zeros(len(labels)), labels))


def run_folds_here(
    configured: list[CandidateSpec],
    train: pd.DataFrame,
    labels: np.ndarray,
    folds: int,
    seed: int,
    threshold: float,
    k: int,
    inner_valid_fraction: float | None,
) -> list[list[dict[str, Any]]]:
    """Every configuration's fold results, in this process (a bar counts the fits on a terminal)."""
    splits = fold_splits(labels, folds, seed)
    out = []
    with tqdm(total=len(configured) * len(splits), desc="cross-validating", unit="fit", disable=None) as bar:
        for spec in configured:
            frame = train.loc[:, list(spec.features)]
            results = []
            for fit_rows, held_rows in splits:
                results.append(
                    fold_result(spec, frame, labels, fit_rows, held_rows, seed, threshold, k, inner_valid_fraction)
                )
                bar.update()
            out.append(results)
    return out


def fold_result(
    spec: CandidateSpec,
    frame: pd.DataFrame,
    labels: np.ndarray,
    fit_rows: np.ndarray,
    held_rows: np.ndarray,
    seed: int,
    threshold: float,
    k: int,
    inner_valid_fraction: float | None,
) -> dict[str, Any]:
    """One configuration on one fold: every metric on the held-out rows, and the trees early stopping kept."""
    model = _fit_fold(spec, frame, labels, fit_rows, seed, inner_valid_fraction)
    p = model.predict_proba(frame.iloc[held_rows])
    out: dict[str, Any] = {"metrics": classification_metrics(labels[held_rows], p, threshold, k)}
    if getattr(model, "best_iteration", None) is not None:
        out["trees"] = int(model.best_iteration)
    return out


def _summary(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """One configuration's row from its folds: mean, std, per fold, all metrics' means, trees kept."""
    scores = [r["metrics"][metric] for r in results]
    finite = [s for s in scores if not math.isnan(s)]
    row: dict[str, Any] = {
        "mean": float(np.mean(finite)) if finite else math.nan,
        "std": float(np.std(finite)) if finite else math.nan,
        "folds": [float(s) for s in scores],
        "metrics": _means([r["metrics"] for r in results]),
    }
    trees = [r["trees"] for r in results if "trees" in r]
    if trees:
        row["trees"] = trees  # per fold: what early stopping kept (or all rounds)
    return row


def _stops_early(spec: CandidateSpec) -> bool:
    return spec.family == "lightgbm" and bool(getattr(spec.params, "early_stopping_rounds", None))


def _fit_fold(
    spec: CandidateSpec,
    frame: pd.DataFrame,
    labels: np.ndarray,
    fit_rows: np.ndarray,
    seed: int,
    inner_valid_fraction: float | None,
):
    """One fold's model, trained as the final fit is: early stopping on an inner slice when the final fit has one."""
    model = build_model(spec, seed=seed)
    if hasattr(model, "predict_threads"):
        model.predict_threads = 1  # a held-out fold is small: more threads would only spin (lightgbm_model.py)
    if not inner_valid_fraction or not _stops_early(spec):
        return model.fit(frame.iloc[fit_rows], labels[fit_rows])
    inner = StratifiedShuffleSplit(n_splits=1, test_size=inner_valid_fraction, random_state=seed % 2**32)
    try:
        learn, stop = next(inner.split(np.zeros(len(fit_rows)), labels[fit_rows]))
    except ValueError:  # too few rows of a class to hold some back: all rounds, no stopping
        return model.fit(frame.iloc[fit_rows], labels[fit_rows])
    learn_rows, stop_rows = fit_rows[learn], fit_rows[stop]
    return model.fit(frame.iloc[learn_rows], labels[learn_rows], (frame.iloc[stop_rows], labels[stop_rows]))


def _means(fold_metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over folds of every numeric metric (NaN folds left out; all NaN: NaN)."""
    out: dict[str, float] = {}
    for name in fold_metrics[0] if fold_metrics else []:
        values = [float(m[name]) for m in fold_metrics if isinstance(m.get(name), int | float)]
        finite = [v for v in values if not math.isnan(v)]
        if values:
            out[name] = float(np.mean(finite)) if finite else math.nan
    return out


def _best(table: list[dict[str, Any]], higher_is_better: bool) -> int:
    """Position of the best finite mean (ties: the earlier; NaN never wins; all NaN: the first)."""
    best = 0
    best_value = math.nan
    for position, row in enumerate(table):
        value = row["mean"]
        if math.isnan(value):
            continue
        if math.isnan(best_value) or (value > best_value if higher_is_better else value < best_value):
            best, best_value = position, value
    return best
