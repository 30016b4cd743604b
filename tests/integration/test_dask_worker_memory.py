"""How Keel's LocalCluster workers manage memory (pipeline/distributed/malloc.py), on real worker processes.

Two sides of one setting: away from their limit workers reuse freed memory (glibc's defaults, not Dask's
MALLOC_TRIM_THRESHOLD_=65536, which cost batch top-K +20-30% CPU), and near it they hand freed memory back
to the OS (else a worker pauses at 80% holding memory it no longer uses, and never resumes).
"""

from __future__ import annotations

import os
import time

import numpy as np
from distributed import Client, get_worker

from pipeline.distributed.cluster import local_cluster
from pipeline.distributed.malloc import TrimNearMemoryLimit

MiB = 1 << 20


def _page_faults_of_reused_arrays(n: int = 20) -> int:
    """Minor page faults while a task allocates and frees a 1 MiB array n times (after one warm-up)."""
    import resource

    block = np.ones(1 << 18, np.float32)
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        block = np.ones(1 << 18, np.float32)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _fragment(megabytes: int) -> int:
    """Fill `megabytes` with 64 KiB blocks, keep every 16th on the worker, free the rest: the freed pages lie
    between kept blocks, so only malloc_trim can return them. Returns the peak resident set."""
    import psutil

    blocks = [b"x" * (64 << 10) for _ in range(megabytes * MiB // (64 << 10))]
    peak = psutil.Process().memory_info().rss
    get_worker().keel_kept_blocks = blocks[::16]
    del blocks
    return peak


def _resident() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _trims(dask_worker) -> int:
    return dask_worker.plugins[TrimNearMemoryLimit.name].trims


def test_workers_reuse_freed_arrays_instead_of_faulting_fresh_pages() -> None:
    """Away from the limit a freed 1 MiB array is reused by the next one. Under Dask's default
    MALLOC_TRIM_THRESHOLD_=65536 each is a fresh mmap: 256 page faults each, ~5,100 for 20 (measured)."""
    with local_cluster(1, 1, "4GiB") as cluster, Client(cluster) as client:
        faults = client.submit(_page_faults_of_reused_arrays, pure=False).result()
        assert faults < 20 * 256 // 4, f"{faults} page faults for 20 reused 1 MiB arrays"
        exported = os.environ.get("MALLOC_TRIM_THRESHOLD_")  # a value the user exports still reaches the workers
        assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {exported}


def test_a_worker_near_its_limit_gives_freed_memory_back() -> None:
    """450 MiB freed between kept blocks on a 1 GiB worker (over the plugin's 50%): trimmed within a second.
    On a 4 GiB worker the same memory stays with the process (no trim: glibc keeps it for reuse)."""
    for limit, trimmed in (("1GiB", True), ("4GiB", False)):
        with local_cluster(1, 1, limit) as cluster, Client(cluster) as client:
            peak = client.submit(_fragment, 450, pure=False).result()
            assert peak > 450 * MiB
            deadline = time.monotonic() + 5
            while True:
                (resident,) = client.run(_resident).values()
                (trims,) = client.run(_trims).values()
                if not trimmed or resident < peak - 300 * MiB or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if trimmed:
                assert trims >= 1 and resident < peak - 300 * MiB, (limit, trims, resident // MiB, peak // MiB)
            else:
                time.sleep(0.6)  # three of the plugin's 200 ms checks
                (trims,) = client.run(_trims).values()
                (resident,) = client.run(_resident).values()
                assert trims == 0 and resident > peak - 100 * MiB, (limit, trims, resident // MiB, peak // MiB)
