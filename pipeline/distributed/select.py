"""Cross-validation fits on the run's Dask cluster: one task per (configuration, fold).

Model selection is the run's most parallel step (candidates x search points x folds of small,
independent fits) and, with a `search` grid, its longest. On `runtime.executor: dask` each fit
is a Dask task on the run's cluster (pipeline/distributed/cluster.py). What crosses the network:
the training split once, as a Parquet file the workers read (cached per worker for the run, never
a frame pickled into every task), and per task the configuration (a small pydantic spec) and the
fold number; each worker recomputes the same stratified folds from the labels and seed. What
comes back: each fold's metrics and kept trees, gathered in (configuration, fold) order, so the
selection table, its ties and the winner are exactly the local ones (tests/integration/test_dask_select.py).

Fits are Dask tasks, not Prefect tasks on prefect-dask's DaskTaskRunner: a selection of 12 points x
5 folds would be 60 task runs, each a few API calls (3-35 ms here), for fits of ~50 ms; the
selection stays one Prefect task (`select_challenger`) with the table as its result. ADR 0024.
"""

from __future__ import annotations

import tempfile
import threading
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.spec.schema import RuntimeSpec

LABEL = "__keel_label__"
_CACHE: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}  # per worker process: path -> (frame, labels)
_CACHE_LOCK = threading.Lock()


def dask_fold_runner(runtime: RuntimeSpec):
    """A `fold_runner` for pipeline.models.select.select_model that fits on the run's cluster."""
    return partial(run_folds_on_dask, runtime)


def run_folds_on_dask(
    runtime: RuntimeSpec,
    configured: list[Any],
    train: pd.DataFrame,
    labels: np.ndarray,
    folds: int,
    seed: int,
    threshold: float,
    k: int,
    inner_valid_fraction: float | None,
) -> list[list[dict[str, Any]]]:
    """Every configuration's fold results, computed by the workers, in the order run_folds_here returns them."""
    from distributed import as_completed

    from pipeline.distributed.cluster import open_cluster

    columns = list(dict.fromkeys(f for spec in configured for f in spec.features))
    with (
        open_cluster(runtime, step="cross-validation") as cluster,
        tempfile.TemporaryDirectory(prefix="keel-cv-", dir=runtime_dir(runtime)) as tmp,
    ):
        path = str(Path(tmp) / "train.parquet")
        train.loc[:, columns].assign(**{LABEL: np.asarray(labels)}).to_parquet(path, index=False)
        jobs = [(c, f) for c in range(len(configured)) for f in range(folds)]
        futures = [
            cluster.client.submit(
                _fold_task,
                configured[c],
                f,
                path,
                folds,
                seed,
                threshold,
                k,
                inner_valid_fraction,
                key=f"keel-cv-{c}-{f}-{Path(tmp).name}",
                pure=False,
            )
            for c, f in jobs
        ]
        with tqdm(total=len(futures), desc="cross-validating on Dask", unit="fit", disable=None) as bar:
            for _ in as_completed(futures):
                bar.update()
        results = cluster.client.gather(futures)
    out: list[list[dict[str, Any]]] = [[] for _ in configured]
    for (c, _), result in zip(jobs, results, strict=True):
        out[c].append(result)
    return out


def runtime_dir(runtime: RuntimeSpec) -> str | None:
    """Where the split is written: the runs folder (shared with the workers on a remote cluster), else temp."""
    runs = getattr(runtime, "runs_dir", None)
    if runs:
        Path(runs).mkdir(parents=True, exist_ok=True)
        return str(runs)
    return None


def _fold_task(
    spec: Any,
    fold: int,
    path: str,
    folds: int,
    seed: int,
    threshold: float,
    k: int,
    inner_valid_fraction: float | None,
) -> dict[str, Any]:
    """On a worker: the fold's fit and held-out metrics, from the split file (read once per worker)."""
    from pipeline.models.select import fold_result, fold_splits

    frame, labels = _read(path)
    fit_rows, held_rows = fold_splits(labels, folds, seed)[fold]
    features = frame.loc[:, list(spec.features)]
    return fold_result(spec, features, labels, fit_rows, held_rows, seed, threshold, k, inner_valid_fraction)


def _read(path: str) -> tuple[pd.DataFrame, np.ndarray]:
    with _CACHE_LOCK:
        if path not in _CACHE:
            table = pd.read_parquet(path)
            _CACHE.clear()  # one run's split at a time per worker
            _CACHE[path] = (table.drop(columns=[LABEL]), table[LABEL].to_numpy())
        return _CACHE[path]
