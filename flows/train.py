"""Training tasks: prepare the data, select among the declared models, fit the challenger.

Thin wrappers over `pipeline/`: one coarse task per step (Prefect costs ~20 ms a task,
so never one per fold or per feature locally; on a Dask cluster each fit is a task, flows/cv_dask.py).
Data-heavy tasks use NO_CACHE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.io_retries import IO_RETRIES
from pipeline.data.prepare import Prepared, load_frame, prepare
from pipeline.models import TabularModel, build_model
from pipeline.models.select import select_model
from pipeline.spec.schema import Spec


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def prepare_data(spec: Spec, base_dir: Path, data_path: Path | None = None) -> Prepared:
    return prepare(spec, load_frame(spec, base_dir, data_path))


@task(cache_policy=NO_CACHE)
def select_challenger(spec: Spec, data: Prepared, always: bool = False) -> tuple[Any, list[dict[str, Any]]]:
    """The declared model, or the cross-validated best of model + candidates (each at its best `search` point).

    `always`: cross-validate even a lone model (a sweep job: --promote-best ranks jobs on this
    score, never on the small test split). Folds train as the final fit does (pipeline/models/select.py).
    A lone model with a `search` grid is cross-validated too: its best point is the one trained.
    """
    if not spec.candidates and not always and getattr(spec.model, "search", None) is None:
        return spec.model, []
    candidates = [spec.model, *spec.candidates]
    metric = spec.selection.metric or "auc"
    train, valid = data.splits["train"], data.splits["valid"]
    features = list(dict.fromkeys(f for c in candidates for f in c.features))
    selection = select_model(
        candidates,
        train[features],
        data.labels("train", spec.data),
        metric,
        spec.selection.cv_folds,
        spec.data.seed,
        spec.evaluation.threshold,
        spec.evaluation.top_k,
        inner_valid_fraction=len(valid) / (len(train) + len(valid)) if len(valid) else None,
        fold_runner=_fold_runner(spec),
    )
    sources = ["model", *(f"candidates.{i}" for i in range(len(spec.candidates)))]
    table = [{"source": source, "metric": metric, **row} for source, row in zip(sources, selection.table, strict=True)]
    return selection.spec, table


def _fold_runner(spec: Spec):
    """runtime.executor dask: each of the selection's fits is a Prefect task on the run's cluster (same table;
    flows/cv_dask.py, ADR 0024). Locally they stay inside this one task: a fit there can be ~50 ms."""
    if spec.runtime.executor != "dask":
        return None
    from flows.cv_dask import prefect_fold_runner

    return prefect_fold_runner(spec.runtime)


@task(cache_policy=NO_CACHE)
def fit_model(spec: Spec, model_spec: Any, data: Prepared) -> TabularModel:
    model = build_model(model_spec, seed=spec.data.seed)
    train, valid = data.splits["train"], data.splits["valid"]
    valid_set = (valid[model.features], data.labels("valid", spec.data)) if len(valid) else None
    if spec.runtime.executor == "dask" and model.family == "lightgbm":  # boosting on the workers (ADR 0024)
        from pipeline.distributed.train import fit_on_dask

        return fit_on_dask(spec.runtime, model, train[model.features], data.labels("train", spec.data), valid_set)
    return model.fit(train[model.features], data.labels("train", spec.data), valid_set)


@task(cache_policy=NO_CACHE)
def refit_model(spec: Spec, model_spec: Any, model: TabularModel, data: Prepared) -> tuple[TabularModel, Any, dict]:
    """evaluation.refit: the model to register, the rows it learned from, and those rows in words."""
    from pipeline.models.refit import refit

    return refit(spec, model_spec, model, data)


def fingerprint(frame: pd.DataFrame) -> str:
    """A cheap, stable fingerprint of the training data (row hash of a fixed sample + shape)."""
    import hashlib

    sample = frame if len(frame) <= 100_000 else frame.iloc[:: max(1, len(frame) // 100_000)]
    digest = hashlib.sha256(pd.util.hash_pandas_object(sample, index=False).to_numpy().tobytes())
    digest.update(f"{frame.shape}".encode())
    return digest.hexdigest()
