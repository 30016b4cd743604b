"""Benchmark: batch top-50 for every user (`pipeline.recsys.system.batch_top_k`), 1M users x 100k items.

Usage: python bench/bench_recsys_batch.py [--users 1000000] [--items 100000] [--rows N] [--k 50]
                                          [--threads 1] [--quick] [--profile]

Builds a StreamRec recommender the way `keel run specs/streamrec.yaml` does (the same
pipeline.recsys.system calls: examples, two-tower + flat FAISS index, three retrieval
sources, LightGBM ranker, diversity re-ranker), trained with small settings (one epoch, a
few impressions per user): the catalogue size and the user count drive batch time, model
quality does not. Then it times, on the same users in the same process:

- keel: `batch_top_k` end to end (all-positives matrix, chunks of users, multi-source
  retrieval of `model.candidates` items, ranking features + ranker, re-ranking, Parquet);
- baseline: a plain FAISS top-k by two-tower score with seen items excluded, written to
  Parquet in the same chunks: no other sources, no ranker, no re-ranker. The ratio says
  what multi-source retrieval + ranking + re-ranking cost per user.

Users/s is extrapolated to the seed's 12M users and compared with the old system's 14 hours.
`--quick`: 50k users (a few minutes on 2 shared cores). `--profile` prints a cProfile of
one chunk of `Recommender.recommend` before timing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import faiss  # noqa: E402
import torch  # noqa: E402

from pipeline.data.synthetic import streamrec  # noqa: E402
from pipeline.recsys import system  # noqa: E402
from pipeline.spec.load import load_spec  # noqa: E402

SPEC_PATH = REPO / "specs" / "streamrec.yaml"
SEED_USERS = 12_000_000
SEED_HOURS = 14.0


def build(users: int, items: int, rows: int, seed: int = 11) -> dict[str, Any]:
    """A fitted Recommender over `users` x `items`, built with the flow's own system functions."""
    overrides = [
        f"data.rows={rows}",
        f"data.scenario.items={items}",
        f"data.scenario.users={users}",
        "model.params.epochs=1",
        "model.params.batch_size=2048",
    ]
    spec = load_spec(str(SPEC_PATH), overrides, []).spec
    t0 = time.perf_counter()
    tables = streamrec.generate(rows, seed, spec.data.scenario)
    log = tables["interactions"]
    rec_tables = system.RecTables(tables["items"], tables["users"])
    ex = system.make_examples(spec, log, rec_tables)
    t1 = time.perf_counter()
    model = system.fit_two_tower(spec, log, rec_tables, ex)
    index = system.build_index(spec, model)
    retrieval = system.Retrieval.fit(model, index, ex, spec.model.candidates)
    t2 = time.perf_counter()
    builder = system.feature_builder(spec, rec_tables, ex)
    ranking = system.train_ranker(spec, builder, retrieval, ex, spec.data.seed)
    attribute, exposure = system.diversity_attribute(spec, rec_tables, ex)
    t3 = time.perf_counter()
    recommender = system.Recommender(spec, retrieval, builder, ranking, attribute, exposure)
    print(
        f"setup: data {t1 - t0:.1f} s ({len(log):,} impressions, {ex.n_users:,} users, {ex.n_items:,} items), "
        f"two-tower + index {t2 - t1:.1f} s, features + ranker {t3 - t2:.1f} s "
        f"(ranker used: {ranking.info.get('used')}, {ranking.info.get('reason')})",
        flush=True,
    )
    return {"spec": spec, "ex": ex, "recommender": recommender}


def run_keel(built: dict[str, Any], k: int, path: Path) -> dict[str, Any]:
    spec, ex = built["spec"], built["ex"]
    positives = system.all_positive_matrix(ex)
    return system.batch_top_k(
        built["recommender"], ex, positives, k, path, spec.data.user, spec.data.item, progress=True
    )


def run_baseline(built: dict[str, Any], k: int, path: Path) -> dict[str, Any]:
    """Plain two-tower top-k: one FAISS search per chunk over-fetching by the largest seen set, numpy filter."""
    spec, ex = built["spec"], built["ex"]
    retrieval: system.Retrieval = built["recommender"].retrieval
    seen = system.all_positive_matrix(ex)
    flat = faiss.IndexFlatIP(retrieval.item_vectors.shape[1])
    flat.add(np.ascontiguousarray(retrieval.item_vectors, dtype=np.float32))
    user_ids, item_ids = ex.user_map.ids, ex.item_map.ids
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for start in range(0, ex.n_users, system.BATCH_CHUNK):
            users = np.arange(start, min(start + system.BATCH_CHUNK, ex.n_users))
            block = seen[users]
            extra = int(np.diff(block.indptr).max()) if len(users) else 0
            scores, found = flat.search(retrieval.user_vectors[users], min(k + extra, ex.n_items))
            seen_keys = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(block.indptr)) * ex.n_items
            seen_keys += block.indices
            found_keys = np.arange(len(users), dtype=np.int64)[:, None] * ex.n_items + found
            banned = np.isin(found_keys, seen_keys) | (found < 0)
            rank = np.cumsum(~banned, axis=1)
            keep = ~banned & (rank <= k)
            n = keep.sum(axis=1)
            frame = pd.DataFrame(
                {
                    spec.data.user: np.repeat(user_ids[users], n),
                    "rank": rank[keep],
                    spec.data.item: item_ids[found[keep]],
                    "score": scores[keep].astype(np.float64),
                }
            )
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    return {"users": ex.n_users, "rows": rows}


def profile_chunk(built: dict[str, Any], k: int) -> None:
    ex = built["ex"]
    users = np.arange(min(system.BATCH_CHUNK, ex.n_users))
    positives = system.all_positive_matrix(ex)
    profiler = cProfile.Profile()
    profiler.enable()
    built["recommender"].recommend(users, positives, k)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


@contextlib.contextmanager
def dense_sources() -> Iterator[None]:
    """The path before the sparse top-k: popularity and co-occurrence ranked over a dense users x catalogue block."""
    saved = system.popularity_top_k, system.cooccurrence_top_k
    system.popularity_top_k = system.cooccurrence_top_k = lambda model, users, k, seen: model.recommend(users, k, seen)
    try:
        yield
    finally:
        system.popularity_top_k, system.cooccurrence_top_k = saved


def timed(fn: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=None, help="impressions to generate (default 4 per user)")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch/faiss/LightGBM threads (2 shared cores here)")
    parser.add_argument("--quick", action="store_true", help="50k users x 100k items")
    parser.add_argument("--profile", action="store_true", help="cProfile one chunk of Recommender.recommend first")
    parser.add_argument(
        "--compare-dense",
        action="store_true",
        help="also time batch_top_k with the old dense popularity/co-occurrence top-k and check identical Parquet",
    )
    args = parser.parse_args()
    if args.quick:
        args.users = 50_000
    rows = args.rows or 4 * args.users
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"batch top-{args.k}: {args.users:,} users x {args.items:,} items, {rows:,} impressions", flush=True)
    built = build(args.users, args.items, rows)
    if args.profile:
        profile_chunk(built, args.k)
    n_users = built["ex"].n_users
    candidates = built["recommender"].retrieval.k
    sides: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="keel-bench-recsys-") as tmp:
        keel, keel_s = timed(lambda: run_keel(built, args.k, Path(tmp) / "keel.parquet"))
        sides.append((f"keel batch_top_k (3 sources, {candidates} cand., ranker, re-rank)", keel_s))
        base, base_s = timed(lambda: run_baseline(built, args.k, Path(tmp) / "baseline.parquet"))
        sides.append(("baseline: FAISS two-tower top-k only", base_s))
        assert pq.read_metadata(Path(tmp) / "keel.parquet").num_rows == keel["rows"]
        assert keel["users"] == base["users"] == n_users
        if args.compare_dense:
            with dense_sources():
                _, dense_s = timed(lambda: run_keel(built, args.k, Path(tmp) / "dense.parquet"))
            sides.append(("keel before: dense popularity/co-occurrence top-k", dense_s))
            same = pq.read_table(Path(tmp) / "dense.parquet").equals(pq.read_table(Path(tmp) / "keel.parquet"))
            assert same, "the sparse and the dense source top-k gave different batch lists"
    print(f"\n{'side':<58} {'wall s':>8} {'users/s':>9} {'12M users':>10} {'vs 14 h':>8}")
    for name, seconds in sides:
        hours = SEED_USERS / (n_users / seconds) / 3600
        print(f"{name:<58} {seconds:>8.1f} {n_users / seconds:>9,.0f} {hours:>9.2f}h {SEED_HOURS / hours:>7.1f}x")
    print(
        f"\nkeel / baseline time: {keel_s / base_s:.1f}x (what multi-source retrieval + ranking + re-ranking cost); "
        f"{keel['rows']:,} rows written; {args.threads} thread(s); extrapolation is linear in users"
    )
    if args.compare_dense:
        print(f"before / after (dense vs sparse source top-k): {dense_s / keel_s:.1f}x, identical Parquet: {same}")


if __name__ == "__main__":
    main()
