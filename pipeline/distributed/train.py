"""LightGBM trained on a Dask cluster (`lightgbm.dask.DaskLGBMClassifier`), registered as a plain Booster.

The training table is written as Parquet parts (one per worker thread, at least two) and read back with
`dask.dataframe.read_parquet`, so the workers build their LightGBM shards from files, never from a frame
pickled into the task graph. Categorical features travel as their fit-time level codes and the booster
gets the level lists back (`pandas_categorical`), so it predicts from the same encoded frames a locally
trained booster does. The result is a `LightGBMTabularModel`: the same files in the bundle, the same
serving code.

Early stopping is replayed on the client: LightGBM's distributed training has no tested early-stopping
callback, so all `n_estimators` rounds are trained and the validation log-loss of every prefix is computed
from the trees' leaf values; the first round after which it has not improved for
`early_stopping_rounds` rounds ends the search, and the best prefix is kept, as lgb.early_stopping does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipeline.models.lightgbm_model import LightGBMTabularModel

LABEL = "__keel_label__"


class DaskLightGBMModel(LightGBMTabularModel):
    """A LightGBMTabularModel whose boosting runs on `client`'s workers (family stays `lightgbm`)."""

    def __init__(self, base: LightGBMTabularModel, client: Any) -> None:
        super().__init__(base.features, base.params, base.seed)
        self.client = client
        self.rounds_trained = 0

    def _fit(self, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        import dask.dataframe as dd
        from lightgbm.dask import DaskLGBMClassifier

        levels = self.categorical_levels
        categorical = [name for name in self.features if name in levels]
        params = self.training_params(y)
        params.pop("verbosity", None)
        workers = len(self.client.scheduler_info()["workers"])
        params["num_threads"] = max(1, params.get("num_threads", 1))
        with tempfile.TemporaryDirectory(prefix="keel-dask-train-") as tmp:
            path = Path(tmp) / "train"
            _write_parts(_codes(x, categorical).assign(**{LABEL: y.astype(np.int8)}), path, max(2, 2 * workers))
            table = self.client.persist(dd.read_parquet(str(path)))  # one partitioning for X and y
            features, label = table[self.features], table[LABEL]
            model = DaskLGBMClassifier(
                client=self.client, n_estimators=self.params.n_estimators, verbosity=-1, **params
            )
            model.fit(features, label, categorical_feature=categorical or "auto")
            booster = model.booster_
        self.rounds_trained = booster.current_iteration()
        booster.pandas_categorical = [list(levels[name]) for name in categorical] or None
        full = lgb.Booster(model_str=booster.model_to_string())
        best = self.rounds_trained
        if valid is not None and self.params.early_stopping_rounds:
            best = best_prefix(full, valid[0], valid[1], self.params.early_stopping_rounds)
        self.best_iteration = best
        self.booster = lgb.Booster(model_str=full.model_to_string(num_iteration=best))


def _codes(x: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categorical columns as float level codes (NaN for missing): the same codes in every part."""
    out = x.copy()
    for name in categorical:
        codes = out[name].cat.codes.to_numpy().astype(np.float64)
        codes[codes < 0] = np.nan
        out[name] = codes
    return out


def _write_parts(frame: pd.DataFrame, path: Path, parts: int) -> None:
    path.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].reset_index(drop=True).to_parquet(path / f"part-{i:05d}.parquet", index=False)


def best_prefix(booster: lgb.Booster, x: pd.DataFrame, y: np.ndarray, rounds: int) -> int:
    """The iteration lgb.early_stopping(rounds) on binary log-loss would keep, from per-tree leaf values."""
    leaves = np.asarray(booster.predict(x, pred_leaf=True), dtype=np.int64)
    if leaves.ndim == 1:
        leaves = leaves[:, None]
    tables = [_leaf_values(tree["tree_structure"]) for tree in booster.dump_model()["tree_info"]]
    values = np.empty(leaves.shape, dtype=np.float64)
    for tree, table in enumerate(tables):
        values[:, tree] = table[leaves[:, tree]]
    raw = np.cumsum(values, axis=1)
    p = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-15, 1 - 1e-15)
    yy = np.asarray(y, dtype=np.float64)[:, None]
    loss = -np.mean(yy * np.log(p) + (1 - yy) * np.log(1 - p), axis=0)
    best, best_loss = 0, np.inf
    for i, value in enumerate(loss):
        if value < best_loss:
            best, best_loss = i, value
        elif i - best >= rounds:
            break
    return best + 1


def _leaf_values(root: dict[str, Any]) -> np.ndarray:
    """Leaf index -> leaf value of one dumped tree (a one-leaf tree has no index: leaf 0)."""
    out: dict[int, float] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            stack.extend((node["left_child"], node["right_child"]))
        else:
            out[int(node.get("leaf_index", 0))] = float(node["leaf_value"])
    values = np.zeros(max(out) + 1)
    for k, v in out.items():
        values[k] = v
    return values


def fit_on_dask(
    runtime: Any, model: LightGBMTabularModel, train: pd.DataFrame, y: np.ndarray, valid, step: str = "train"
) -> LightGBMTabularModel:
    """Fit `model` (a LightGBMTabularModel from build_model) on the run's cluster; returns a LightGBMTabularModel.

    `step` names the work in the run's cluster record: `train`, or `refit` (evaluation.refit)."""
    from pipeline.distributed.cluster import open_cluster
    from pipeline.distributed.errors import worker_faults

    with open_cluster(runtime, step) as cluster, worker_faults():
        fitted = DaskLightGBMModel(model, cluster.client).fit(train, y, valid)
    plain = LightGBMTabularModel(fitted.features, fitted.params, fitted.seed)
    plain.__dict__.update({k: v for k, v in fitted.__dict__.items() if k != "client"})
    return plain
