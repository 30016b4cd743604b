"""`evaluation.refit`: retrain the chosen configuration on more of the data before it is registered.

The gates judge a model trained on the training part and measured on test. With `refit: none`
(the default) that very model is registered: the artifact the gates certified is the one that
ships. `train_valid` / `all` retrain the same configuration (family, features, params, seed; for
LightGBM with the number of trees early stopping chose, since no validation part is left to stop
on) on those parts; the test metrics then describe its sibling trained on less data, and the
report says so. With `runtime.executor: dask` a LightGBM refit trains on the run's cluster, as the
first fit did (pipeline/distributed/train.py). See docs/adr/0020-refit.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.prepare import Prepared
from pipeline.models import TabularModel, build_model
from pipeline.spec.schema import Spec

PARTS = {"none": ("train",), "train_valid": ("train", "valid"), "all": ("train", "valid", "test")}


def refit(spec: Spec, model_spec: Any, fitted: TabularModel, data: Prepared) -> tuple[TabularModel, pd.DataFrame, dict]:
    """The model to register, the rows it was trained on, and what the report says about them."""
    mode = spec.evaluation.refit
    parts = [p for p in PARTS[mode] if len(data.splits[p])]
    frame = pd.concat([data.splits[p] for p in parts]) if len(parts) > 1 else data.splits["train"]
    labels = np.concatenate([data.labels(p, spec.data) for p in parts])
    info: dict[str, Any] = {"refit": mode, "parts": parts, "rows": len(frame), "positives": int(labels.sum())}
    if mode == "none":
        return fitted, frame, info
    fixed = _fixed_rounds(model_spec, fitted)
    if fixed is not model_spec:
        info["n_estimators"] = fixed.params.n_estimators
    model = build_model(fixed, seed=spec.data.seed)
    if spec.runtime.executor == "dask" and model.family == "lightgbm":  # on the run's cluster, as the first fit
        from pipeline.distributed.train import fit_on_dask

        return fit_on_dask(spec.runtime, model, frame[fitted.features], labels, None, step="refit"), frame, info
    return model.fit(frame[fitted.features], labels), frame, info


def _fixed_rounds(model_spec: Any, fitted: TabularModel) -> Any:
    """LightGBM that stopped early: the same number of trees, and nothing left to stop on."""
    best = getattr(fitted, "best_iteration", None)
    params = getattr(model_spec, "params", None)
    if best is None or params is None or not getattr(params, "early_stopping_rounds", None):
        return model_spec
    params = params.model_copy(update={"n_estimators": int(best), "early_stopping_rounds": None})
    return model_spec.model_copy(update={"params": params})


def trained_on_text(info: dict[str, Any]) -> str:
    text = f"{' + '.join(info['parts'])} ({info['rows']:,} rows, {info['positives']:,} positive)"
    if info["refit"] == "none":
        return text + ": the model the gates measured (evaluation.refit: none)"
    trees = f", {info['n_estimators']} trees as early stopping chose" if "n_estimators" in info else ""
    return (
        text
        + f": refit after the gates (evaluation.refit: {info['refit']}{trees}); test metrics are the pre-refit model's"
    )
