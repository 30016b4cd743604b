"""The run's Dask cluster: connect to runtime.dask.address, or start a LocalCluster and stop it after.

Workers are processes (never threads of this one): a worker's memory, GIL and crash are its own, as
on a real cluster. One run has one cluster: `run_cluster` opens it when the run starts, records it in
run.json (`cluster`) and prints the dashboard link once; every Dask step of the run (`open_cluster`)
reuses it and notes the scheduler it reached, and it is closed when the run ends, whatever happened.
A step called outside a run (a test, a bench) opens and closes its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.distributed.errors import DistributedError, require_dask
from pipeline.runs import RunDir, record_cluster
from pipeline.spec.schema import RuntimeSpec

_LOCK = threading.Lock()
_RUN_CLUSTER: Cluster | None = None  # the cluster of the run in progress in this process (run_cluster)


@dataclass
class Cluster:
    client: Any  # distributed.Client
    address: str
    dashboard: str | None
    kind: str  # "local" (a LocalCluster started for this run) or "address" (runtime.dask.address)
    workers: int
    steps: list[dict[str, str]] = field(default_factory=list)  # the Dask steps that ran here, in order

    def record(self) -> dict[str, Any]:
        """What run.json keeps about the cluster."""
        return {"address": self.address, "dashboard_link": self.dashboard, "n_workers": self.workers, "kind": self.kind}

    def used_by(self, step: str) -> None:
        """Note a step and the scheduler it reached (asked of the scheduler, so one id means one cluster)."""
        self.steps.append({"step": step, "scheduler_id": str(self.client.scheduler_info()["id"])})


@contextlib.contextmanager
def open_cluster(
    runtime: RuntimeSpec, step: str = "", run: RunDir | None = None, connect_timeout_s: float = 30.0
) -> Iterator[Cluster]:
    """The cluster for one step: the run's own when a run opened one, else one opened (and closed) here.

    `run`: a cluster opened here is recorded in its run.json (with the steps that used it, at the end).
    """
    with _LOCK:
        shared = _RUN_CLUSTER
    if shared is not None:
        if step:
            shared.used_by(step)
        yield shared
        return
    with _opened(runtime, connect_timeout_s) as cluster:
        print(describe(cluster))
        if run is not None:
            record_cluster(run, cluster.record())
        if step:
            cluster.used_by(step)
        try:
            yield cluster
        finally:
            if run is not None:
                record_cluster(run, cluster.record() | {"steps": cluster.steps})


@contextlib.contextmanager
def run_cluster(runtime: RuntimeSpec, run: RunDir | None) -> Iterator[Cluster | None]:
    """The run's one cluster (None on the local executor): recorded in run.json, reused by every step.

    Inside a sweep's cluster (run_cluster with run None around its jobs) a job's run reuses that one:
    its run.json records it with `shared: true` and the steps this run sent to it."""
    global _RUN_CLUSTER
    if runtime.executor != "dask":
        yield None
        return
    with _LOCK:
        shared = _RUN_CLUSTER
    if shared is not None:
        before = len(shared.steps)
        try:
            yield shared
        finally:
            if run is not None:
                record_cluster(run, shared.record() | {"shared": True, "steps": shared.steps[before:]})
        return
    with open_cluster(runtime, run=run) as cluster:
        with _LOCK:
            _RUN_CLUSTER = cluster
        try:
            yield cluster
        finally:
            with _LOCK:
                _RUN_CLUSTER = None


@contextlib.contextmanager
def _opened(runtime: RuntimeSpec, connect_timeout_s: float) -> Iterator[Cluster]:
    """Connect to runtime.dask.address, or start a LocalCluster of worker processes and close it on exit."""
    require_dask()
    from distributed import Client

    spec = runtime.dask
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)  # worker restarts are reported by us, in words
    if spec.address:
        try:
            client = Client(spec.address, timeout=connect_timeout_s)
        except OSError as exc:
            raise DistributedError(f"cannot reach the Dask scheduler at {spec.address}: {exc}") from None
        try:
            workers = len(client.scheduler_info()["workers"])
            yield Cluster(client, spec.address, client.dashboard_link, "address", workers)
        finally:
            client.close()
        return
    local = spec.local
    cluster = local_cluster(local.n_workers, local.threads_per_worker, local.memory_limit, local.profile)
    try:
        client = Client(cluster)
        try:
            client.wait_for_workers(local.n_workers, timeout=120)
            yield Cluster(client, cluster.scheduler_address, client.dashboard_link, "local", local.n_workers)
        finally:
            client.close()
    finally:
        cluster.close()


# Dask's nanny spawns workers with MALLOC_TRIM_THRESHOLD_=65536, which makes every array above 128 KiB a
# fresh mmap (+20-30% CPU on batch top-K). Keel's workers keep glibc's defaults and give memory back
# only near their limit (pipeline/distributed/malloc.py); an exported MALLOC_TRIM_THRESHOLD_ still reaches them.
WORKER_PRE_SPAWN_ENV: dict[str, str | None] = {"MALLOC_TRIM_THRESHOLD_": None}


def native_threads(n_workers: int, threads_per_worker: int) -> dict[str, str]:
    """OpenMP/BLAS threads per worker: this host's cores shared out among the worker threads (at least 1).

    Dask's nanny gives every worker one (`OMP_NUM_THREADS=1`), right when workers fill the cores, but a
    cluster with fewer worker threads than cores then leaves cores idle that FAISS, torch and LightGBM
    would use in one process (1M users x 100k items: the local process used 1.17 cores, 1 worker 1.0).
    """
    from dask.system import CPU_COUNT

    threads = str(max(1, CPU_COUNT // max(1, n_workers * threads_per_worker)))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}


def local_cluster(
    n_workers: int, threads_per_worker: int, memory_limit: str | int | float | None = "auto", profile: bool = False
) -> Any:
    """A LocalCluster of worker processes as Keel runs them (runs, benches and tests use this one).

    profile: Dask's sampling profiler in the workers. Off by default: every 10 ms it walks each busy thread's
    stack on the worker's event loop, which takes the GIL from the task (batch top-K: -7% wall without it).
    """
    import dask
    from distributed import LocalCluster

    from pipeline.distributed.malloc import TrimNearMemoryLimit

    settings: dict[str, Any] = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_PRE_SPAWN_ENV.items()}
    settings["distributed.worker.profile.enabled"] = profile  # the nannies hand their config to the workers
    with dask.config.set(settings):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            processes=True,
            dashboard_address=":0",  # any free port: two runs on one host never collide
            silence_logs=logging.ERROR,
            plugins=(TrimNearMemoryLimit(),),  # each worker's own, a restarted one included (its nanny's kwargs)
            # set in the worker before any task loads an OpenMP runtime; not through pre-spawn-environ, where
            # an OMP_NUM_THREADS in this process's environment wins, and the first nanny leaves Dask's 1 there
            env=native_threads(n_workers, threads_per_worker),
        )


def describe(cluster: Cluster) -> str:
    where = "LocalCluster" if cluster.kind == "local" else "cluster"
    return f"dask: {where} {cluster.address}, {cluster.workers} worker(s); dashboard {cluster.dashboard}"
