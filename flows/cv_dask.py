"""The selection's fits as Prefect tasks on the run's Dask cluster (`runtime.executor: dask`, ADR 0024).

Each (configuration, fold) fit is one `cv-fit` task on prefect-dask's DaskTaskRunner over the run's
one cluster: the fits run side by side, one per worker thread, and the Prefect UI shows each as a
task run of the run's flow, with its state, duration and failure. What crosses the network is what
the plain Dask path sends (pipeline/distributed/select.py): the split file's path, a configuration
and a fold number out; the fold's metrics and kept trees back; never a frame.

Each task run adds ~85 ms of wall per fit on 2 workers (bench_dask_cv.py, credit's 90 fits of ~50 ms:
Dask's profiler puts as much worker time in Prefect rebuilding its settings and API clients for every
task run as in the fits), a few percent of a fit on data that needs a cluster;
the local executor keeps selection one task (flows/train.py). With `runtime.dask.cv_tasks: dask` (many
fits well under a second), outside a flow run (a library call), or when the workers cannot reach the
flow's API (a remote cluster and a temporary API on 127.0.0.1), the fits run as plain Dask tasks on the
same cluster, with the same results, and the run says why.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.on_dask import current_api_url, task_runner_on, unreachable_reason
from pipeline.distributed.cluster import Cluster
from pipeline.distributed.select import by_configuration, fit_as_dask_tasks, fit_fold, fold_jobs, run_folds_on_dask
from pipeline.spec.schema import RuntimeSpec


@task(name="cv-fit", task_run_name="{name}", cache_policy=NO_CACHE)
def cv_fit(name: str, spec: Any, fold: int, fit_args: tuple) -> dict[str, Any]:
    """One fold's fit and held-out metrics on the worker that runs this task (`name` titles the task run)."""
    return fit_fold(spec, fold, *fit_args)


def prefect_fold_runner(runtime: RuntimeSpec):
    """A `fold_runner` for pipeline.models.select.select_model: every fit a Prefect task on the run's cluster."""
    return partial(run_folds_on_dask, runtime, fit=partial(fit_as_tasks, runtime))


def fit_as_tasks(
    runtime: RuntimeSpec, cluster: Cluster, configured: list[Any], folds: int, fit_args: tuple
) -> list[list[dict[str, Any]]]:
    """The fits as Prefect tasks when they can report to the flow's API, else as plain Dask tasks (and why)."""
    from prefect.context import FlowRunContext

    if runtime.dask.cv_tasks == "dask":
        why = "runtime.dask.cv_tasks is dask"
    elif FlowRunContext.get() is None:
        why = "not inside a Prefect flow run"
    else:
        api_url = current_api_url()
        why = unreachable_reason(cluster, api_url)
        if why is None:
            return _fit_as_prefect_tasks(cluster, api_url, configured, folds, fit_args)
    print(f"cross-validation: {len(configured) * folds} fits as Dask tasks, not Prefect tasks: {why}")
    return fit_as_dask_tasks(cluster, configured, folds, fit_args)


def _fit_as_prefect_tasks(
    cluster: Cluster, api_url: str, configured: list[Any], folds: int, fit_args: tuple
) -> list[list[dict[str, Any]]]:
    from distributed import as_completed
    from tqdm import tqdm

    jobs = fold_jobs(configured, folds)
    with task_runner_on(cluster, api_url) as runner:
        futures = [
            runner.submit(
                cv_fit,
                {
                    "name": f"{configured[c].family} {c + 1}/{len(configured)} fold {f + 1}/{folds}",
                    "spec": configured[c],
                    "fold": f,
                    "fit_args": fit_args,
                },
            )
            for c, f in jobs
        ]
        with tqdm(total=len(futures), desc="cross-validating (Prefect tasks on Dask)", unit="fit", disable=None) as bar:
            for _ in as_completed([future.wrapped_future for future in futures]):
                bar.update()
        results = [future.result() for future in futures]
    return by_configuration(configured, jobs, results)
