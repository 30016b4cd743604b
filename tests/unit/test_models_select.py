"""Cross-validated selection finds out when logistic beats boosted trees, and when it does not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.models.select import select_model
from pipeline.spec.schema import LightGBMModel, LightGBMParams, LogisticModel, LogisticParams

FEATURES = [f"x{i}" for i in range(8)]
DEEP_TREES = LightGBMModel(
    family="lightgbm",
    features=FEATURES,
    params=LightGBMParams(num_leaves=64, learning_rate=0.3, n_estimators=200, min_child_samples=2),
)
SHALLOW_TREES = LightGBMModel(family="lightgbm", features=FEATURES[:2], params=LightGBMParams(n_estimators=100))
LOGISTIC = LogisticModel(family="logistic", features=FEATURES, params=LogisticParams(C=0.1))


def _table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)


def _draw(logit: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed + 1).random(len(logit)) < 1 / (1 + np.exp(-logit))).astype(int)


def test_regularised_logistic_beats_deep_trees_on_small_linear_data():
    x = _table(600, 0)
    y = _draw(1.0 * x.x0 - 0.8 * x.x1 + 0.6 * x.x2 - 0.5, 0)
    selection = select_model([DEEP_TREES, LOGISTIC], x, y, metric="auc", folds=5, seed=0)
    assert selection.index == 1
    assert selection.spec is LOGISTIC
    deep, logistic = selection.table
    assert logistic["mean"] > deep["mean"] + 0.02
    assert [row["selected"] for row in selection.table] == [False, True]
    assert len(deep["folds"]) == 5 and deep["std"] > 0
    assert selection.best_score == logistic["mean"]


def test_trees_win_when_an_interaction_drives_the_label():
    x = _table(2000, 1)
    y = _draw(3.0 * np.sign(x.x0 * x.x1), 1)
    selection = select_model([LOGISTIC, SHALLOW_TREES], x, y, metric="auc", folds=3, seed=1)
    assert selection.index == 1
    assert selection.table[1]["mean"] > 0.75 > selection.table[0]["mean"]


def test_lower_is_better_metrics_pick_the_minimum():
    x = _table(600, 2)
    y = _draw(1.0 * x.x0 - 0.8 * x.x1, 2)
    selection = select_model([DEEP_TREES, LOGISTIC], x, y, metric="log_loss", folds=3, seed=2)
    assert not selection.higher_is_better
    assert selection.index == int(np.argmin([row["mean"] for row in selection.table]))


def test_unknown_or_group_metrics_are_refused():
    x = _table(100, 3)
    y = np.arange(100) % 2
    for metric in ("ndcg@10", "auc_gap", "nope"):
        with pytest.raises(ValueError, match="cannot select"):
            select_model([LOGISTIC], x, y, metric=metric, folds=2, seed=0)
    with pytest.raises(ValueError, match="at least one"):
        select_model([], x, y, metric="auc", folds=2, seed=0)


def test_single_candidate_and_nan_handling():
    x = _table(100, 4)
    y = np.arange(100) % 2
    selection = select_model([LOGISTIC], x, y, metric="auc", folds=2, seed=0)
    assert selection.index == 0 and not math.isnan(selection.best_score)


def test_folds_stop_early_on_an_inner_slice_as_the_final_fit_does():
    x = _table(1200, 5)
    y = _draw(1.0 * x.x0 - 0.8 * x.x1, 5)
    stopping = LightGBMModel(
        family="lightgbm",
        features=FEATURES,
        params=LightGBMParams(num_leaves=31, learning_rate=0.2, n_estimators=400, early_stopping_rounds=10),
    )
    inner = select_model([stopping], x, y, metric="auc", folds=3, seed=0, inner_valid_fraction=0.15)
    [row] = inner.table
    assert len(row["trees"]) == 3 and max(row["trees"]) < 400  # each fold stopped on its own inner slice
    assert set(row["metrics"]) >= {"auc", "brier", "log_loss"} and row["metrics"]["auc"] == row["mean"]
    # no valid part in the spec: the final fit runs every round, and so does every fold
    full = select_model([stopping], x, y, metric="auc", folds=3, seed=0, inner_valid_fraction=None)
    assert full.table[0]["trees"] == [400, 400, 400]
    # stopping early beats 400 rounds of an over-eager learner on this small, noisy table
    assert inner.best_score > full.best_score
    # logistic has nothing to stop: the same with or without the inner slice
    a = select_model([LOGISTIC], x, y, metric="auc", folds=3, seed=0, inner_valid_fraction=0.15)
    b = select_model([LOGISTIC], x, y, metric="auc", folds=3, seed=0)
    assert a.table[0]["folds"] == b.table[0]["folds"] and "trees" not in a.table[0]
