"""Errors of the Dask executor: one sentence each, printed by the CLI without a traceback (exit 2)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipeline.data.errors import DataSourceError


class DistributedError(DataSourceError):
    """The Dask executor cannot run: packages missing, scheduler unreachable, a partition lost for good."""


INSTALL_HINT = "install keel[dask]: pip install -c constraints.txt -e '.[dask]' (or scripts/setup.sh)"


def require_dask() -> None:
    """Raise a DistributedError naming the extra when dask, distributed or prefect-dask is missing."""
    missing = []
    for module in ("dask", "distributed", "dask.dataframe", "prefect_dask"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise DistributedError(f"runtime.executor dask needs {', '.join(missing)}: {INSTALL_HINT}")


@contextlib.contextmanager
def worker_faults() -> Iterator[None]:
    """A task whose workers kept dying becomes one clear sentence; outputs are committed only after success."""
    try:
        yield
    except Exception as exc:
        from distributed import KilledWorker

        if isinstance(exc, KilledWorker):
            raise DistributedError(
                f"Dask workers died repeatedly while running {getattr(exc, 'task', exc)} "
                "(distributed.scheduler.allowed-failures); nothing of this run was committed as complete: "
                "check the workers' memory (runtime.dask.local.memory_limit) and run again"
            ) from None
        raise
