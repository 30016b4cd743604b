"""Cross-validation fits on the run's Dask cluster: one task per (configuration, fold).

Model selection is the run's most parallel step (candidates x search points x folds of
independent fits) and, with a `search` grid, its longest. On `runtime.executor: dask` each fit
runs on a worker of the run's cluster (pipeline/distributed/cluster.py). What crosses the network:
the training split once, as a Parquet file the workers read (cached per worker for the run, never
a frame pickled into every task), and per task the configuration (a small pydantic spec) and the
fold number; each worker recomputes the same stratified folds from the labels and seed. What
comes back: each fold's metrics and kept trees, gathered in (configuration, fold) order, so the
selection table, its ties and the winner are exactly the local ones (tests/integration/test_dask_select.py).

Inside a Prefect flow run each fit is a Prefect task on prefect-dask's DaskTaskRunner
(flows/cv_dask.py: a task run per fit in the UI); this module is the part without Prefect: the
split file, the work of one fit on a worker, and plain Dask tasks for a selection called outside a
flow run or on a cluster whose workers cannot reach the flow's API. ADR 0024.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator
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
    """A `fold_runner` for pipeline.models.select.select_model that fits on the run's cluster as Dask tasks."""
    return partial(run_folds_on_dask, runtime)


@contextlib.contextmanager
def split_file(runtime: RuntimeSpec, configured: list[Any], train: pd.DataFrame, labels: np.ndarray) -> Iterator[str]:
    """The training split (every configuration's features and the labels) as one Parquet file, removed after."""
    columns = list(dict.fromkeys(f for spec in configured for f in spec.features))
    with tempfile.TemporaryDirectory(prefix="keel-cv-", dir=runtime_dir(runtime)) as tmp:
        path = str(Path(tmp) / "train.parquet")
        train.loc[:, columns].assign(**{LABEL: np.asarray(labels)}).to_parquet(path, index=False)
        yield path


def fold_jobs(configured: list[Any], folds: int) -> list[tuple[int, int]]:
    """Every (configuration, fold) pair, in the order run_folds_here fits them."""
    return [(c, f) for c in range(len(configured)) for f in range(folds)]


def by_configuration(configured: list[Any], jobs: list[tuple[int, int]], results: list[dict]) -> list[list[dict]]:
    """The fold results regrouped per configuration, as run_folds_here returns them."""
    out: list[list[dict[str, Any]]] = [[] for _ in configured]
    for (c, _), result in zip(jobs, results, strict=True):
        out[c].append(result)
    return out


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
    *,
    fit: Callable[[Any, list[Any], int, tuple], list[list[dict]]] | None = None,
) -> list[list[dict[str, Any]]]:
    """Every configuration's fold results, computed by the workers from one split file.

    `fit(cluster, configured, folds, fit_args)` submits the fits: plain Dask tasks by default (fit_as_dask_tasks),
    a Prefect task each from a flow run (flows/cv_dask.py)."""
    from pipeline.distributed.cluster import open_cluster

    with (
        open_cluster(runtime, step="cross-validation") as cluster,
        split_file(runtime, configured, train, labels) as path,
    ):
        fit_args = (path, folds, seed, threshold, k, inner_valid_fraction)
        return (fit or fit_as_dask_tasks)(cluster, configured, folds, fit_args)


def fit_as_dask_tasks(cluster: Any, configured: list[Any], folds: int, fit_args: tuple) -> list[list[dict]]:
    """One Dask task per (configuration, fold) on `cluster`: the results per configuration, in order."""
    from distributed import as_completed

    jobs = fold_jobs(configured, folds)
    name = Path(fit_args[0]).parent.name
    futures = [
        cluster.client.submit(fit_fold, configured[c], f, *fit_args, key=f"keel-cv-{c}-{f}-{name}", pure=False)
        for c, f in jobs
    ]
    with tqdm(total=len(futures), desc="cross-validating on Dask", unit="fit", disable=None) as bar:
        for _ in as_completed(futures):
            bar.update()
    return by_configuration(configured, jobs, cluster.client.gather(futures))


def runtime_dir(runtime: RuntimeSpec) -> str | None:
    """Where the split is written: the runs folder (shared with the workers on a remote cluster), else temp."""
    runs = getattr(runtime, "runs_dir", None)
    if runs:
        Path(runs).mkdir(parents=True, exist_ok=True)
        return str(runs)
    return None


def fit_fold(
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


def cached_splits() -> list[str]:
    """On a worker: the split files this process has read (a test's proof that fits ran there)."""
    with _CACHE_LOCK:
        return list(_CACHE)
