"""LightGBM binary classifier trained with `lightgbm.train` from a spec's LightGBMParams.

The booster is saved in LightGBM's own text format (never pickled), so a saved model can
be read, diffed and loaded without executing anything. Training is deterministic for a
given seed so that a re-run of a spec reproduces the same model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipeline.models.base import TabularModel
from pipeline.models.errors import ModelFormatError
from pipeline.spec.schema import LightGBMParams

BOOSTER_FILE = "booster.txt"
ONE_THREAD_BELOW_ROWS = 20_000


def training_threads(rows: int) -> int:
    """One thread below ONE_THREAD_BELOW_ROWS, else two, capped by OMP_NUM_THREADS when it is set.

    Why the cap: a Dask worker's nanny sets OMP_NUM_THREADS=1 (one thread per task), and a sweep job
    run whole on a worker (runtime.dask.sweep jobs) trains beside another job: two OpenMP threads each
    on two shared cores spin-wait on each other (a 4-job sweep of 100k rows took 115 s vs 77 s locally).
    The trees are the same at any thread count (col-wise histograms), so the cap changes only time.
    """
    if rows < ONE_THREAD_BELOW_ROWS:
        return 1
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS") or 2)
    except ValueError:
        cap = 2
    return max(1, min(2, cap))


class LightGBMTabularModel(TabularModel):
    """Gradient-boosted trees; contributions are exact tree SHAP values in log-odds."""

    family = "lightgbm"

    def __init__(self, features: list[str], params: LightGBMParams | None = None, seed: int = 0) -> None:
        super().__init__(features)
        self.params = params or LightGBMParams()
        self.seed = seed
        self.booster: lgb.Booster | None = None
        self.best_iteration: int | None = None
        # Scoring is row-parallel and deterministic at any thread count; 0 lets LightGBM use every core.
        self.predict_threads = 0

    def training_params(self, y: np.ndarray) -> dict[str, Any]:
        """The lightgbm.train parameters the spec's params map onto."""
        p = self.params
        params: dict[str, Any] = {
            "objective": "binary",
            "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves,
            "max_depth": p.max_depth,
            "min_data_in_leaf": p.min_child_samples,
            "feature_fraction": p.colsample_bytree,
            "lambda_l1": p.reg_alpha,
            "lambda_l2": p.reg_lambda,
            "seed": self.seed,
            # Col-wise histograms sum each feature's rows in order: the trees are the same at any thread count.
            # Below ~20k rows a tree takes ~1 ms and a second OpenMP thread only adds its spin-wait (20x slower
            # per tree on a loaded 2-core box), which CV x a search grid pays ~100 times.
            "num_threads": training_threads(len(y)),
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        if p.subsample < 1:
            params.update(bagging_fraction=p.subsample, bagging_freq=1)
        if p.class_weight == "balanced":
            positives = float(np.sum(y))
            params["scale_pos_weight"] = (len(y) - positives) / max(positives, 1.0)
        return params

    def _fit(self, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        categorical = list(self.categorical_levels)
        train_set = lgb.Dataset(x, label=y, categorical_feature=categorical, free_raw_data=True)
        callbacks = []
        valid_sets = []
        if valid is not None:
            valid_sets = [lgb.Dataset(valid[0], label=valid[1], categorical_feature=categorical, reference=train_set)]
            if self.params.early_stopping_rounds:
                callbacks.append(lgb.early_stopping(self.params.early_stopping_rounds, verbose=False))
        # Without a validation set early_stopping_rounds has nothing to watch: all n_estimators rounds are kept.
        booster = lgb.train(
            self.training_params(y),
            train_set,
            num_boost_round=self.params.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.best_iteration = booster.best_iteration or booster.current_iteration()
        # Keep only the trees that are used, so that the fitted and the re-loaded model are the same object.
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_iteration))

    def _predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(self._booster().predict(x, num_threads=self.predict_threads), dtype=np.float64)

    def _contributions(self, x: pd.DataFrame) -> np.ndarray:
        # Exact tree SHAP costs O(trees * leaves * depth^2) per row (~0.3 ms for the reference model per core):
        # the slow step of explaining a large batch, hence every core by default.
        booster = self._booster()
        values = np.asarray(booster.predict(x, pred_contrib=True, num_threads=self.predict_threads), dtype=np.float64)
        return values[:, :-1]

    @property
    def expected_value(self) -> float:
        """The bias column of pred_contrib: the same for every row, so one all-missing row gives it."""
        counts = self.last_unseen_counts
        row = self.prepare({name: [None] for name in self.features})
        self.last_unseen_counts = counts
        return float(self._booster().predict(row, pred_contrib=True)[0, -1])

    @property
    def num_trees(self) -> int:
        return self._booster().num_trees()

    def _booster(self) -> lgb.Booster:
        if self.booster is None:
            self._kinds()  # raises the not-fitted error
            raise ModelFormatError("the LightGBM model has no booster.")
        return self.booster

    def _save_files(self, directory: Path) -> list[str]:
        self._booster().save_model(str(directory / BOOSTER_FILE))
        return [BOOSTER_FILE]

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any]) -> LightGBMTabularModel:
        path = directory / BOOSTER_FILE
        if not path.is_file():
            raise ModelFormatError(f"{directory} lacks {BOOSTER_FILE}.")
        model = cls(list(manifest["features"]))
        model.booster = lgb.Booster(model_file=str(path))
        if model.booster.feature_name() != model.features:
            raise ModelFormatError(
                f"{path} was trained on features {model.booster.feature_name()}, but {directory}/model.json "
                f"lists {model.features}."
            )
        model.best_iteration = model.booster.current_iteration()
        return model
