"""A sweep's jobs as Prefect tasks on the run's Dask cluster (`runtime.dask.sweep: jobs`, ADR 0024).

Why jobs, not steps: a sweep is embarrassingly parallel across its jobs, while one job's steps are
short and sequential (split, select, fit, evaluate, gate, register). Each job is one task of the
`keel-sweep` flow on prefect-dask's `DaskTaskRunner` over the cluster `run_cluster` opened, so the
jobs run side by side, one per worker thread, and the UI shows each job's `keel-run` flow as a
subflow of its task. A job runs whole on its worker with `runtime.executor=local`: it must not
open a cluster of its own inside a worker, nor wait on the cluster it is running on (LightGBM's
distributed training needs every worker at once, which the other jobs hold). Only a small dict
crosses back: status, bundle tag, run directory, metrics, gates, selection; no frame or model.

The workers report to the Prefect API the sweep uses. A temporary (ephemeral) API lives on
127.0.0.1: a LocalCluster's workers reach it, an existing cluster's workers may not, so with an
`address` and no Prefect server the sweep runs its jobs as steps and says why (`jobs_on_dask`).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from prefect import task

from flows.on_dask import task_runner_on, unreachable_reason
from pipeline.distributed.cluster import Cluster
from pipeline.scoring.progress import bar

LOCAL_IN_JOB = "runtime.executor=local"  # a job never opens or waits on a cluster from inside a worker
REPORT_KEYS = ("status", "spec_name", "metrics", "gates", "model_family", "bundle", "run_dir", "selection")


def jobs_on_dask(cluster: Cluster | None, dask_sweep: str, task_kind: str, api_url: str | None) -> str | None:
    """Why this sweep runs its jobs one after another on this cluster, or None when they run as parallel tasks."""
    if cluster is None:
        return "local executor"
    if dask_sweep != "jobs":
        return "runtime.dask.sweep is steps"
    if task_kind == "recommendation":
        return "a recommendation sweep keeps its best job's fitted recommender in memory for the batch"
    if api_url is None:
        return "no Prefect API"
    return unreachable_reason(cluster, api_url)


@task(name="sweep-job", task_run_name="job {index}")
def sweep_job(
    index: int, task_kind: str, spec_path: str, overrides: list[str], conf_dirs: list[str] | None, sweep: dict
) -> dict[str, Any]:
    """One sweep job, whole, on the worker that runs this task: its keel-run flow, then what the summary needs."""
    from flows.sweep import attempt_job

    started = time.time()
    outcome, report, reason = attempt_job(task_kind, spec_path, [*overrides, LOCAL_IN_JOB], conf_dirs, sweep)
    kept = None if report is None else {key: report.get(key) for key in REPORT_KEYS}
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return {
        "outcome": outcome,
        "report": kept,
        "reason": reason,
        "worker": worker,
        "started": started,
        "finished": time.time(),
    }


def run_jobs_as_tasks(
    cluster: Cluster,
    api_url: str,
    spec_path: str,
    jobs: list[dict[str, Any]],
    conf_dirs: list[str] | None,
    task_kind: str,
    sweep_id: str,
) -> list[dict[str, Any]]:
    """Submit every job at once to the cluster; the outcomes in job order (sweep_job's dicts)."""
    from flows.sweep import sweep_record

    print(f"sweep {sweep_id}: {len(jobs)} jobs as tasks on {cluster.address} ({cluster.workers} worker(s))")
    progress = bar(len(jobs), f"sweep {sweep_id}", "job")
    with task_runner_on(cluster, api_url) as runner:
        futures = []
        for job in jobs:
            parameters = {
                "index": job["index"],
                "task_kind": task_kind,
                "spec_path": spec_path,
                "overrides": list(job["overrides"]),
                "conf_dirs": conf_dirs,
                "sweep": sweep_record(sweep_id, job, len(jobs)),
            }
            futures.append(runner.submit(sweep_job, parameters))
        outcomes = []
        for job, future in zip(jobs, futures, strict=True):
            outcome = future.result()
            print(f"sweep {sweep_id}: job {job['index']}/{len(jobs)} {' '.join(job['swept'])}: {outcome['outcome']}")
            outcomes.append(outcome)
            progress.update(1)
    progress.close()
    return outcomes
