"""Open the run's Dask cluster: connect to runtime.dask.address, or start a LocalCluster and stop it after.

Workers are processes (never threads of this one): a worker's memory, GIL and crash are its own, as
on a real cluster. The dashboard link is printed and recorded in run.json.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.distributed.errors import DistributedError, require_dask
from pipeline.spec.schema import RuntimeSpec


@dataclass
class Cluster:
    client: Any  # distributed.Client
    address: str
    dashboard: str | None
    kind: str  # "local" (started for this run) or "remote" (runtime.dask.address)
    workers: int

    def record(self) -> dict[str, Any]:
        """What run.json keeps about the cluster."""
        return {"kind": self.kind, "scheduler": self.address, "dashboard": self.dashboard, "workers": self.workers}


@contextlib.contextmanager
def open_cluster(runtime: RuntimeSpec, connect_timeout_s: float = 30.0) -> Iterator[Cluster]:
    """The cluster for one run; a LocalCluster started here is closed on exit, whatever happened."""
    require_dask()
    from distributed import Client, LocalCluster

    spec = runtime.dask
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)  # worker restarts are reported by us, in words
    if spec.address:
        try:
            client = Client(spec.address, timeout=connect_timeout_s)
        except OSError as exc:
            raise DistributedError(f"cannot reach the Dask scheduler at {spec.address}: {exc}") from None
        try:
            yield Cluster(
                client, spec.address, client.dashboard_link, "remote", len(client.scheduler_info()["workers"])
            )
        finally:
            client.close()
        return
    local = spec.local
    cluster = LocalCluster(
        n_workers=local.n_workers,
        threads_per_worker=local.threads_per_worker,
        memory_limit=local.memory_limit,
        processes=True,
        dashboard_address=":0",  # any free port: two runs on one host never collide
        silence_logs=logging.ERROR,
    )
    try:
        client = Client(cluster)
        try:
            client.wait_for_workers(local.n_workers, timeout=120)
            yield Cluster(client, cluster.scheduler_address, client.dashboard_link, "local", local.n_workers)
        finally:
            client.close()
    finally:
        cluster.close()


def describe(cluster: Cluster) -> str:
    where = "LocalCluster" if cluster.kind == "local" else "cluster"
    return f"dask: {where} {cluster.address}, {cluster.workers} worker(s); dashboard {cluster.dashboard}"
