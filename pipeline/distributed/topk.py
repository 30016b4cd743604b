"""StreamRec's batch top-K with runtime.executor dask: user chunks mapped over the workers, one Parquet dataset.

The client sends each task a range of dense user indices (a multiple of `system.BATCH_CHUNK`, so every
worker cuts the same 1024-user chunks `system.batch_top_k` cuts) and the bundle's identity (store, tag,
file digests): never a model or a frame. Each worker process loads the registered bundle once through
`load_recsys_bundle` (every file sha256-checked; the digests must be the ones the client resolved) and
rebuilds the recommender from it as /recommend does (`OnlineRecommender`: retrieval, ranking features,
ranker, re-rank attribute, cold start from the bundle's serving state). Each task writes its users' rows
as its own part through a temporary name into a hidden staging directory; the client writes
`_manifest.json` last and renames the directory into place (ADR 0024): the target is whole or absent.
Parts are numbered in user order, so the dataset read back is the local file's rows in the local order.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.atomic_files import write_frame_atomic
from pipeline.distributed.score import commit_directory
from pipeline.recsys import system
from pipeline.runs import RunDir
from pipeline.spec.schema import Spec

PARTS_PER_WORKER = 16  # tasks per worker: small enough to balance, large enough to amortise a task


@dataclass(eq=False)
class WorkerRecommender:
    """What one worker process needs for batch lists: the recommender, every known positive, the id maps."""

    recommender: system.Recommender
    seen: Any  # scipy.sparse.csr_matrix: users x items, never recommended again
    user_ids: np.ndarray
    item_ids: np.ndarray


_LOADED: dict[tuple[str, str], WorkerRecommender] = {}
_LOCK = threading.Lock()


def worker_recommender(home: str, tag: str, files: dict[str, str], spec: Spec) -> WorkerRecommender:
    """The bundle's recommender, built once per worker process; `files` must be the manifest the client saw."""
    from pipeline.recsys.bundle import load_recsys_bundle
    from pipeline.recsys.online import OnlineRecommender
    from pipeline.registry import BundleStore

    with _LOCK:
        loaded = _LOADED.get((home, tag))
        if loaded is None:
            ref = BundleStore(Path(home)).get(tag)
            if ref.manifest.files != files:
                raise RuntimeError(f"bundle {tag} in {home} is not the one the run resolved (file digests differ)")
            bundle = load_recsys_bundle(ref)  # verifies every file's sha256 before reading it
            online = OnlineRecommender(tag, bundle, spec.serving)  # the serving state, rebuilt as /recommend does
            recommender = system.Recommender(
                spec,
                online.retrieval,
                online.builder,
                online.ranking,
                online.attribute,
                online.exposure,
                cold_start=online.cold_start,
            )
            users, items = bundle.users.iloc[:, 0].to_numpy(), bundle.items.iloc[:, 0].to_numpy()
            loaded = WorkerRecommender(recommender, online.seen, users, items)
            _LOADED[(home, tag)] = loaded
        return loaded


def loaded_recommenders() -> list[str]:
    """Tags this worker process has built a recommender for (tests: each worker loads a bundle once)."""
    return [tag for _, tag in _LOADED]


def _top_k_part(
    index: int,
    start: int,
    stop: int,
    bundle_key: tuple[str, str, dict[str, str]],
    spec: Spec,
    k: int,
    columns: tuple[str, str],
    staging: str,
) -> dict[str, Any]:
    """On a worker: the rows of users [start, stop) in batch_top_k's chunks, written as part `index`."""
    w = worker_recommender(*bundle_key, spec)
    frames = [
        system.top_k_rows(
            w.recommender, np.arange(s, min(s + system.BATCH_CHUNK, stop)), w.seen, k, w.user_ids, w.item_ids, *columns
        )
        for s in range(start, stop, system.BATCH_CHUNK)
    ]
    frame = pd.concat(frames, ignore_index=True)
    name = f"part-{index:05d}.parquet"
    write_frame_atomic(frame, Path(staging) / name)  # tmp + rename: a retried task rewrites the same part
    return {"part": name, "rows": len(frame), "users": stop - start}


def user_ranges(n_users: int, parts: int, users_per_part: int | None = None) -> list[tuple[int, int]]:
    """Ranges covering [0, n_users) in user order: about `parts` of whole BATCH_CHUNK chunks by default."""
    if users_per_part is None:
        chunks = max(1, -(-n_users // system.BATCH_CHUNK))
        users_per_part = max(1, -(-chunks // max(1, parts))) * system.BATCH_CHUNK
    return [(a, min(a + users_per_part, n_users)) for a in range(0, n_users, max(1, users_per_part))]


def batch_top_k_on_dask(
    spec: Spec,
    store: Any,
    tag: str,
    n_users: int,
    target: Path,
    run: RunDir | None = None,
    progress: bool | None = None,
    users_per_part: int | None = None,
) -> dict[str, Any]:
    """`system.batch_top_k` for the registered bundle `tag` on the run's cluster; the same summary keys.

    `target` becomes a directory dataset of parts (read it with pandas/pyarrow as one table).
    progress: a tqdm bar of users as parts finish; None shows it only when stderr is a terminal.
    users_per_part: users a task lists (default: ~PARTS_PER_WORKER tasks a worker, whole BATCH_CHUNKs). A user's
    list does not depend on which users share its chunk, so any split gives the same rows (the tests use small ones).
    """
    from distributed import as_completed

    from pipeline.distributed.cluster import open_cluster
    from pipeline.distributed.errors import worker_faults

    assert spec.data.user and spec.data.item
    ref = store.get(tag)
    key = (str(store.home), tag, dict(ref.manifest.files))
    k = spec.evaluation.top_k
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
    with open_cluster(spec.runtime, "top_k", run) as cluster, worker_faults():
        client = cluster.client
        ranges = user_ranges(n_users, PARTS_PER_WORKER * cluster.workers, users_per_part)
        staging.mkdir(parents=True)
        bar = tqdm(
            total=n_users, unit="user", desc="batch top-k (dask)", disable=None if progress is None else not progress
        )
        try:
            futures = [
                client.submit(
                    _top_k_part, i, a, b, key, spec, k, (spec.data.user, spec.data.item), str(staging), pure=False
                )
                for i, (a, b) in enumerate(ranges)
            ]
            written = []
            for future in as_completed(futures):
                done = future.result()
                written.append(done)
                bar.update(done["users"])
            written.sort(key=lambda part: part["part"])
            rows = sum(part["rows"] for part in written)
            manifest = {"parts": written, "rows": rows, "users": n_users, "complete": True}
            (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            commit_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            bar.close()
    return {"users": n_users, "rows": rows, "top_k": k, "parquet": str(target), "parts": len(written)}


def batch_top_k(spec: Spec, ex: Any, run: RunDir, store: Any, tag: str) -> dict[str, Any]:
    """The run's batch step on Dask (`keel run`, flows/recsys.py): the registered bundle's lists on the workers."""
    target = run / "recommendations.parquet"
    return batch_top_k_on_dask(spec, store, tag, ex.n_users, target, run) | {"executor": "dask"}
