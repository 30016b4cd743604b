"""Give freed memory back to the OS only when a worker nears its memory limit.

Dask's nanny spawns every worker with MALLOC_TRIM_THRESHOLD_=65536 so that glibc returns freed
memory at once. Setting it also switches off glibc's dynamic mmap threshold: every array above
128 KiB becomes a fresh mmap, faulted in page by page and unmapped again on free. Batch top-K
allocates such arrays per chunk and paid 4x the page faults and +20-30% CPU for it (ADR 0024).

Without the variable glibc reuses freed memory but keeps it: a worker near its limit then pauses
(Dask pauses at 80% of the process's memory) with memory it no longer uses, and a paused worker
runs no task that could free it (seen: 30M rows at 1 GiB per worker, both workers paused for good).
So Keel's workers keep glibc's defaults and run `malloc_trim(0)` from a periodic callback whenever
the process holds more than TRIM_AT of its memory limit: fast while there is room, Dask's behaviour
when there is not. Without glibc (macOS, musl) the plugin does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

TRIM_AT = 0.5  # of the worker's memory limit; Dask spills at 0.6-0.7 and pauses at 0.8
INTERVAL_MS = 200  # Dask's memory monitor samples every 100 ms


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): hand free heap pages of every arena back to the OS. False without glibc."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


class TrimNearMemoryLimit(WorkerPlugin):
    """malloc_trim whenever the worker's memory exceeds `fraction` of its limit (`trims` counts them)."""

    name = "keel-trim-near-memory-limit"

    def __init__(self, fraction: float = TRIM_AT, interval_ms: int = INTERVAL_MS) -> None:
        self.fraction = fraction
        self.interval_ms = interval_ms
        self.trims = 0

    def setup(self, worker: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        limit = worker.memory_manager.memory_limit
        if not limit:
            return
        trim_above = int(limit * self.fraction)

        def check() -> None:
            if worker.monitor.get_process_memory() > trim_above:
                self.trims += 1
                malloc_trim()

        callback = PeriodicCallback(check, self.interval_ms)
        worker.periodic_callbacks[self.name] = callback  # stopped with the worker's own callbacks
        callback.start()

    def teardown(self, worker: Any) -> None:
        callback = worker.periodic_callbacks.pop(self.name, None)
        if callback is not None:
            callback.stop()
