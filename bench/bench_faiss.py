"""Benchmark: the retrieval index types (pipeline.recsys.index) against exact search.

Usage: python bench/bench_faiss.py [--items 100000] [--dim 32] [--queries 1000] [--k 100]
                                   [--data random|clustered] [--threads 1] [--quick]

Builds each index with `build_index` (the code serving uses) over unit vectors, takes the
exact top-k of a flat inner-product index as the truth, then sweeps each approximate
index's search knob (HNSW efSearch, IVF nprobe) and prints recall@k vs exact and queries/s
in two modes: `single` (one query per call, how a request is served) and `batch` (all
queries in one call, how a batch pre-compute runs). Best of 3 timings. Target: recall@k
>= 0.95 at >= 5x the exact queries/s; rows that meet it are marked.

`random` data (uniform on the sphere) is the hardest case for an index: there is no
cluster structure to exploit. `clustered` data (vectors around 200 taste centroids) is
closer to trained item embeddings.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import faiss
import numpy as np

from pipeline.recsys.index import IndexParams, ItemIndex, build_index


def unit(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def catalogue(n: int, dim: int, queries: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return unit(rng.normal(size=(n, dim))), unit(rng.normal(size=(queries, dim)))
    centroids = rng.normal(size=(200, dim))
    items = unit(centroids[rng.integers(0, 200, n)] + 0.5 * rng.normal(size=(n, dim)))
    near = items[rng.integers(0, n, queries)] + 0.5 * unit(rng.normal(size=(queries, dim)))
    return items, unit(near)


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def qps(index: ItemIndex, queries: np.ndarray, k: int) -> tuple[float, float]:
    """(single-query calls per second, batched queries per second)."""
    single = best_of(lambda: [index.search(queries[i : i + 1], k) for i in range(len(queries))])
    batch = best_of(lambda: index.search(queries, k))
    return len(queries) / single, len(queries) / batch


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(np.intersect1d(f, t, assume_unique=True)) for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits) / truth.size)


def row(name: str, *cells: str) -> str:
    widths = (8, 10, 11, 6, 10, 6)
    return f"{name:<28}" + "".join(f" {cell:>{width}}" for cell, width in zip(cells, widths, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--data", choices=["random", "clustered"], default="random")
    parser.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads (the box has 2 shared cores)")
    parser.add_argument("--quick", action="store_true", help="20k items, 300 queries")
    args = parser.parse_args()
    if args.quick:
        args.items, args.queries = 20_000, 300
    faiss.omp_set_num_threads(args.threads)
    items, queries = catalogue(args.items, args.dim, args.queries, args.data)
    k = args.k
    print(f"{args.items} items x {args.dim}-d ({args.data}), {args.queries} queries, k={k}, {args.threads} thread(s)")

    exact = build_index(items, IndexParams(type="flat"))
    _, truth = exact.search(queries, k)
    exact_single, exact_batch = qps(exact, queries, k)
    print("\n" + row("index", "build s", f"recall@{k}", "single q/s", "x", "batch q/s", "x"))
    print(row("flat (exact)", "-", "1.000", f"{exact_single:.0f}", "1.0", f"{exact_batch:.0f}", "1.0"))

    nlist = max(16, int(4 * np.sqrt(args.items)))
    builds: list[tuple[str, IndexParams, str, list[int]]] = [
        ("hnsw M=32 efC=200", IndexParams(type="hnsw", hnsw_m=32, hnsw_ef_construction=200), "ef", [100, 200, 400]),
        (f"ivf nlist={nlist}", IndexParams(type="ivf", ivf_nlist=nlist), "nprobe", [8, 16, 32, 64, 128]),
    ]
    for label, params, knob, values in builds:
        start = time.perf_counter()
        index = build_index(items, params)
        built = time.perf_counter() - start
        for value in values:
            if knob == "ef":
                index.set_search_params(hnsw_ef_search=value)
            else:
                index.set_search_params(ivf_nprobe=value)
            _, found = index.search(queries, k)
            r = recall(found, truth)
            single, batch = qps(index, queries, k)
            x_single, x_batch = single / exact_single, batch / exact_batch
            meets = r >= 0.95 and (x_single >= 5 or x_batch >= 5)
            cells = (f"{built:.1f}", f"{r:.3f}", f"{single:.0f}", f"{x_single:.1f}", f"{batch:.0f}", f"{x_batch:.1f}")
            print(row(f"{label} {knob}={value}", *cells) + ("  <- target met" if meets else ""))


if __name__ == "__main__":
    main()
