"""Dask's sampling profiler in Keel's LocalCluster workers: off unless the spec asks (runtime.dask.local.profile).

Why off: every 10 ms the worker's event loop walks each busy thread's stack, taking the GIL from the task;
batch top-K on one worker ran ~7% faster without it (bench/README.md). On when asked, the dashboard's
Profile page (client.profile()) has the samples.
"""

from __future__ import annotations

import time

from pipeline.distributed.cluster import open_cluster
from pipeline.spec.load import load_spec
from tests.integration.serving_fixtures import SPEC_PATH


def _busy(seconds: float) -> int:
    """Pure-Python work for `seconds`: what the profiler samples."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def _profiled(overrides: list[str]) -> tuple[list[bool], int]:
    """(whether each worker runs the profiler's periodic callback, samples the cluster kept) after 1 s of work."""
    overrides = ["runtime=dask_local", "runtime.dask.local.n_workers=1", *overrides]
    runtime = load_spec(str(SPEC_PATH), overrides).spec.runtime
    with open_cluster(runtime) as cluster:
        client = cluster.client
        running = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
        assert client.submit(_busy, 1.0, pure=False).result() > 0
        return list(running.values()), int(client.profile().get("count", 0))


def test_workers_do_not_profile_by_default() -> None:
    running, samples = _profiled([])
    assert running == [False] and samples == 0


def test_profile_true_fills_the_dashboards_profile_page() -> None:
    running, samples = _profiled(["runtime.dask.local.profile=true"])
    assert running == [True] and samples >= 20  # ~100 samples in 1 s at the 10 ms interval
