"""OpenMP/BLAS threads in Keel's LocalCluster workers: the host's cores shared out among the worker threads.

Why: Dask's nanny starts every worker with OMP_NUM_THREADS=1, so a cluster with fewer worker threads than cores
leaves cores idle that FAISS, torch and LightGBM use in one process (bench/README.md, top-K at 1M users).
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow


def _threads() -> dict[str, object]:
    """In a worker: the environment it was started with, and the OpenMP pool LightGBM's runtime reports."""
    import lightgbm  # noqa: F401  (loads the OpenMP runtime)
    from threadpoolctl import threadpool_info

    openmp = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"]
    return {"env": os.environ.get("OMP_NUM_THREADS"), "openmp": max(openmp) if openmp else None}


def _workers_threads(n_workers: int, threads_per_worker: int) -> list[dict[str, object]]:
    from distributed import Client

    from pipeline.distributed.cluster import local_cluster

    with local_cluster(n_workers, threads_per_worker, "1GiB") as cluster, Client(cluster) as client:
        return list(client.run(_threads).values())


def test_fewer_worker_threads_than_cores_get_the_spare_cores_for_openmp() -> None:
    from dask.system import CPU_COUNT

    if CPU_COUNT < 2:
        pytest.skip("one core: every worker has one thread either way")
    assert _workers_threads(1, 1) == [{"env": str(CPU_COUNT), "openmp": CPU_COUNT}]


def test_workers_that_fill_the_cores_keep_one_openmp_thread_each() -> None:
    from dask.system import CPU_COUNT

    workers = max(2, CPU_COUNT)
    assert _workers_threads(workers, 1) == [{"env": "1", "openmp": 1}] * workers
