"""Prefect tasks on the run's Dask cluster: the API the workers report to, and whether they can reach it.

Shared by the sweep's jobs (flows/sweep_dask.py) and the selection's fits (flows/cv_dask.py): both
submit Prefect tasks to prefect-dask's `DaskTaskRunner` over the cluster `open_cluster` gave the run,
so the Prefect UI shows each as a task run of the flow that submitted it. A temporary (ephemeral) API
lives on 127.0.0.1: a LocalCluster's workers reach it, an existing cluster's workers on other hosts
may not, and then the caller runs the work its other way and says why (`unreachable_reason`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from pipeline.distributed.cluster import Cluster


def current_api_url() -> str:
    """The API this flow reports to, ephemeral included (its temporary server's URL), for the workers."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


def unreachable_reason(cluster: Cluster, api_url: str) -> str | None:
    """Why the cluster's workers could not report to `api_url`, or None when they can."""
    if cluster.kind == "address" and _loopback(api_url) and not _loopback(cluster.address):
        return (
            f"the workers of {cluster.address} cannot reach this command's temporary Prefect API on 127.0.0.1 "
            "(start `keel server start` or set runtime.prefect_api_url to run them as Prefect tasks)"
        )
    return None


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def task_runner_on(cluster: Cluster, api_url: str) -> Iterator[Any]:
    """A started DaskTaskRunner over the run's own cluster, its tasks reporting to `api_url`.

    The settings each task carries to its worker name this API (else a worker would start its own);
    the runner asks distributed for the current client before its address: make it the run's own.
    """
    from distributed import Client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    with (
        Client.as_current(cluster.client),
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        DaskTaskRunner(address=cluster.address) as runner,
    ):
        yield runner
