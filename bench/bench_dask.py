"""runtime.executor dask vs local (issue 17): batch scoring and LightGBM training, same data, same run.

    GX_ANALYTICS_ENABLED=false PYTHONPATH=. python bench/bench_dask.py --rows 2000000      # ~4 min here
    GX_ANALYTICS_ENABLED=false PYTHONPATH=. python bench/bench_dask.py --rows 10000000 --train-rows 0
    GX_ANALYTICS_ENABLED=false PYTHONPATH=. python bench/bench_dask.py --rows 0 --train-rows 0 --topk-users 100000

Scoring: the table is `--parts` Parquet files (synthetic StreamFlow rows, unique ids); a bundle from one
`keel run` (20k rows). `local` = what `keel score` does in one process (read the directory, contract,
derived features, LightGBM, ranks, Parquet), with LightGBM on every core and with one thread;
`dask k` = pipeline/distributed on a LocalCluster of k single-threaded worker processes (contract per
partition with cross-partition unique ids, scoring, sample-sort ranks, parts + manifest + rename). The
Dask output is asserted equal to the local one (sorted by row). Cluster start-up (processes, imports,
the bundle loaded once per worker) is reported apart; local 1 thread is the best of 2 runs.

Training: the spec's data prepared once; `lightgbm.train` locally vs `DaskLGBMClassifier` on 2 workers
(pipeline/distributed/train.py), test AUC and wall time.

Top-K (`--topk-users`): a StreamRec bundle registered by one `keel run` (1 epoch, fairness/causal off, 4
impressions a user); `local` = the same per-part work (recommender rebuilt from the bundle, chunks of 1024
users, one Parquet part per range) in this process, one after another, with its thread pools as they are and
again at one thread (threadpoolctl, FAISS, torch: what a worker has); `dask k` = pipeline/distributed/topk.py
on a LocalCluster of k single-threaded worker processes, bundle pre-loaded (start-up reported apart). All
three outputs are asserted equal; `--topk-rounds` (default 2) runs the three in turn and compares the best
wall of each. Before and after every round, a control: a fixed CPU-bound job (Python loop + a 20 MB top-50
`argpartition`) in one process, then in two at once; its speed-up is what this machine gives two processes of
perfectly parallel work at that moment (a shared VM gave 1.4x-2.0x within minutes), the ceiling to read the
2-worker figure against.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")
CPU: dict[str, float] = {}  # CPU seconds per path: robust to other jobs on a shared machine, unlike wall time


def make_table(root: Path, rows: int, parts: int) -> Path:
    from pipeline.data.synthetic.streamflow import generate
    from pipeline.spec.schema import ScenarioSpec

    table = root / "table"
    table.mkdir()
    for i, n in enumerate(np.diff(np.linspace(0, rows, parts + 1).astype(int))):
        frame = generate(int(n), 1000 + i, ScenarioSpec(corrupt_fraction=0.001))
        frame["subscriber_id"] = f"p{i:03d}_" + frame["subscriber_id"].astype(str)  # unique across parts
        frame.to_parquet(table / f"part-{i:03d}.parquet", index=False)
    return table


def train_bundle(root: Path) -> tuple[object, str]:
    from pipeline.cli import main
    from pipeline.registry import BundleStore

    os.environ["BENTOML_HOME"] = str(root / "bentoml")
    cwd = os.getcwd()
    os.chdir(root)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            main(["run", SPEC, "data.rows=20000", "--json"])
    finally:
        os.chdir(cwd)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    return BundleStore(root / "bentoml"), result["bundle"]


def score_local(spec, store, tag, table: Path, target: Path, threads: int) -> tuple[float, pd.DataFrame]:
    from pipeline.data.sources import load_path
    from pipeline.registry.tabular import load_tabular_bundle
    from pipeline.scoring.command import score_frame, write_scores

    bundle = load_tabular_bundle(store.get(tag))
    bundle.model.predict_threads = threads
    start, cpu = time.perf_counter(), time.process_time()
    scored = score_frame(spec, bundle, load_path(table), 0, "")
    write_scores(scored.frame, target)
    CPU[f"local{threads}"] = time.process_time() - cpu  # every thread of this process
    return time.perf_counter() - start, scored.frame


def score_dask(spec, store, tag, table: Path, target: Path, workers: int) -> tuple[float, float]:
    from distributed import Client

    from pipeline.data.partitioned import list_partitions
    from pipeline.distributed.cluster import local_cluster
    from pipeline.distributed.score import score_partitions, worker_bundle
    from pipeline.distributed.validate import validate_partitions

    start = time.perf_counter()
    with (
        local_cluster(workers, 1) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        key = (str(store.home), tag, dict(store.get(tag).manifest.files))
        client.run(worker_bundle, *key)  # imports + the bundle (sha256-checked) once per worker: start-up cost
        startup = time.perf_counter() - start
        cpu = sum(client.run(_cpu_seconds).values())
        start = time.perf_counter()
        _, accepted = validate_partitions(client, spec, list_partitions(str(table)), None)
        threshold = float(spec.evaluation.threshold)
        score_partitions(client, accepted, key, spec.data.entity_id, threshold, 0, "", target)
        elapsed = time.perf_counter() - start
        CPU[f"dask{workers}"] = sum(client.run(_cpu_seconds).values()) - cpu  # the workers' processes
    return elapsed, startup


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this worker process so far."""
    times = os.times()
    return times.user + times.system


def bench_scoring(args, root: Path) -> list[str]:
    from pipeline.spec.load import load_spec

    table = make_table(root, args.rows, args.parts)
    store, tag = train_bundle(root)
    spec = load_spec(SPEC, [f"data.source={table}"]).spec
    lines = [f"scoring {args.rows:,} rows in {args.parts} Parquet parts, bundle {tag}", ""]
    lines.append(f"{'path':<28}{'wall s':>9}{'rows/s':>12}{'vs local 1t':>13}{'efficiency':>12}")
    t_one, _ = score_local(spec, store, tag, table, root / "local_1t.parquet", 1)  # also warms this process
    t_one = min(t_one, score_local(spec, store, tag, table, root / "local_1t.parquet", 1)[0])
    t_all, local = score_local(spec, store, tag, table, root / "local_all.parquet", 0)
    expected = local.drop(columns="spec_sha256").sort_values("row").reset_index(drop=True)
    del local
    rows = len(expected)
    results = {}
    for workers in (1, 2):
        target = root / f"dask_{workers}.parquet"
        elapsed, startup = score_dask(spec, store, tag, table, target, workers)
        got = pd.read_parquet(target).drop(columns="spec_sha256").sort_values("row").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected)  # identical output
        results[workers] = (elapsed, startup)
        shutil.rmtree(target)
    lines.append(f"{'local, LightGBM all cores':<28}{t_all:>9.1f}{rows / t_all:>12,.0f}{t_one / t_all:>12.2f}x{'':>12}")
    lines.append(f"{'local, 1 thread':<28}{t_one:>9.1f}{rows / t_one:>12,.0f}{1.0:>12.2f}x{'':>12}")
    one = results[1][0]
    for workers, (elapsed, startup) in results.items():
        efficiency = one / (workers * elapsed)
        lines.append(
            f"{f'dask {workers} worker(s) x 1 thread':<28}{elapsed:>9.1f}{rows / elapsed:>12,.0f}"
            f"{t_one / elapsed:>12.2f}x{efficiency:>11.0%}  (cluster start {startup:.1f} s)"
        )
    lines.append("")
    lines.append(f"overhead at 1 worker vs local 1 thread: {one / t_one - 1:+.0%}; outputs identical (sorted by row)")
    lines.append("")
    lines.append("CPU seconds (independent of other jobs on the host): rows per CPU-second")
    for name, seconds in CPU.items():
        lines.append(f"  {name:<10}{seconds:>8.1f} CPU s{rows / seconds:>12,.0f} rows/CPU-s")
    if "dask1" in CPU and "dask2" in CPU:
        lines.append(f"  work efficiency 2 workers vs 1 (CPU s of 1 / CPU s of 2): {CPU['dask1'] / CPU['dask2']:.0%}")
    return lines


def bench_training(args) -> list[str]:
    from distributed import Client
    from sklearn.metrics import roc_auc_score

    from pipeline.data.prepare import load_frame, prepare
    from pipeline.distributed.cluster import local_cluster
    from pipeline.distributed.train import DaskLightGBMModel
    from pipeline.models import build_model
    from pipeline.spec.load import load_spec

    loaded = load_spec(SPEC, [f"data.rows={args.train_rows}"])
    spec = loaded.spec
    data = prepare(spec, load_frame(spec, loaded.base_dir))
    train, valid, test = (data.splits[k] for k in ("train", "valid", "test"))
    y_train, y_valid, y_test = (data.labels(k, spec.data) for k in ("train", "valid", "test"))
    model = build_model(spec.model, seed=spec.data.seed)
    start = time.perf_counter()
    model.fit(train[model.features], y_train, (valid[model.features], y_valid))
    t_local = time.perf_counter() - start
    auc_local = roc_auc_score(y_test, model.predict_proba(test[model.features]))
    with (
        local_cluster(2, 1) as cluster,
        Client(cluster) as client,
    ):
        distributed = DaskLightGBMModel(build_model(spec.model, seed=spec.data.seed), client)
        start = time.perf_counter()
        distributed.fit(train[model.features], y_train, (valid[model.features], y_valid))
        t_dask = time.perf_counter() - start
    auc_dask = roc_auc_score(y_test, distributed.predict_proba(test[model.features]))
    return [
        f"training on {len(train):,} rows ({args.train_rows:,} generated), test {len(test):,} rows",
        "",
        f"{'path':<34}{'wall s':>9}{'test AUC':>10}{'trees kept':>12}",
        f"{'local lightgbm.train (2 threads)':<34}{t_local:>9.1f}{auc_local:>10.4f}{model.best_iteration:>12}",
        f"{'lightgbm.dask, 2 workers x 1 thr':<34}{t_dask:>9.1f}{auc_dask:>10.4f}{distributed.best_iteration:>12}"
        f"  (of {distributed.rounds_trained} trained)",
        "",
        f"AUC difference {auc_dask - auc_local:+.4f} (|d| <= 0.002: {abs(auc_dask - auc_local) <= 0.002})",
    ]


def recsys_bundle(root: Path, users: int, items: int, k: int) -> tuple[object, str, list[str]]:
    """One `keel run` of a small-epoch StreamRec with `users` users: (store, tag, overrides)."""
    from pipeline.cli import main
    from pipeline.registry import BundleStore

    overrides = [
        f"data.rows={4 * users}",
        f"data.scenario.users={users}",
        f"data.scenario.items={items}",
        "model.params.epochs=1",
        "model.params.batch_size=2048",
        f"evaluation.top_k={k}",
        "~fairness",
        "~causal",
    ]
    os.environ["BENTOML_HOME"] = str(root / "bentoml")
    cwd, out = os.getcwd(), io.StringIO()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out):
            main(["run", str(REPO / "specs" / "streamrec.yaml"), *overrides, "--json"])
    finally:
        os.chdir(cwd)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    return BundleStore(root / "bentoml"), result["bundle"], overrides


def _control_job(_: int) -> float:
    """Fixed CPU-bound work, no I/O: seconds it took in this process."""
    start = time.perf_counter()
    total = 0
    for i in range(6_000_000):
        total += i * i
    scores = np.random.default_rng(0).random((1024, 5000), dtype=np.float32)
    for _ in range(15):
        np.argpartition(scores, -50, axis=1)
    return time.perf_counter() - start


def parallel_ceiling() -> float:
    """Speed-up of 2 processes over 1 on _control_job: the machine's own limit for perfectly parallel work."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_control_job, [0, 1])  # warm: imports in both processes
        one = pool.map(_control_job, [0], chunksize=1)[0]
        two = pool.map(_control_job, [0, 1], chunksize=1)
    return 2 * one / max(two)


@contextlib.contextmanager
def one_thread():
    """This process's native thread pools (OpenMP: LightGBM, FAISS; BLAS; torch) at one thread, as in a worker."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    before = (faiss.omp_get_max_threads(), torch.get_num_threads())
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        faiss.omp_set_num_threads(before[0])
        torch.set_num_threads(before[1])


def _topk_local(topk, ranges, key, spec, columns, target: Path, threads_1: bool) -> tuple[float, float]:
    """The per-part work in this process, one part after another: (wall s, CPU s)."""
    shutil.rmtree(target, ignore_errors=True)
    with one_thread() if threads_1 else contextlib.nullcontext():
        start, cpu = time.perf_counter(), time.process_time()
        for i, (a, b) in enumerate(ranges):
            topk._top_k_part(i, a, b, key, spec, spec.evaluation.top_k, columns, str(target))
        return time.perf_counter() - start, time.process_time() - cpu


def _topk_dask(topk, workers, key, spec, overrides, store, tag, n_users, target: Path) -> tuple[float, float, float]:
    """batch_top_k_on_dask on a fresh LocalCluster, bundle pre-loaded: (wall s, workers' CPU s, start-up s)."""
    from distributed import Client

    from pipeline.distributed.cluster import local_cluster
    from pipeline.spec.load import load_spec

    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    with local_cluster(workers, 1) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        client.run(topk.worker_recommender, *key, spec)  # imports + bundle (sha256-checked) once per worker
        startup = time.perf_counter() - start
        address = ["runtime=dask_local", f"runtime.dask.address={cluster.scheduler_address}"]
        dask_spec = load_spec(str(REPO / "specs" / "streamrec.yaml"), [*overrides, *address]).spec
        cpu = sum(client.run(_cpu_seconds).values())
        start = time.perf_counter()
        topk.batch_top_k_on_dask(dask_spec, store, tag, n_users, target, progress=False)
        wall = time.perf_counter() - start
        return wall, sum(client.run(_cpu_seconds).values()) - cpu, startup


def bench_topk(args, root: Path) -> list[str]:
    """Local, 1 worker and 2 workers, `--topk-rounds` times in turn; the best wall of each is compared.

    Why rounds: on this shared VM the same single-process work took 91-106 s in runs minutes apart, so one
    pass of each path compares the machine's moods as much as the paths; the best of each is the least disturbed.
    """
    from pipeline.distributed import topk
    from pipeline.spec.load import load_spec

    store, tag, overrides = recsys_bundle(root, args.topk_users, args.topk_items, 50)
    spec = load_spec(str(REPO / "specs" / "streamrec.yaml"), overrides).spec
    key = (str(store.home), tag, dict(store.get(tag).manifest.files))
    n_users = len(topk.worker_recommender(*key, spec).user_ids)  # also loads this process's copy
    ranges = topk.user_ranges(n_users, topk.PARTS_PER_WORKER * 2)
    columns = (spec.data.user, spec.data.item)
    paths = tuple(name for name in ("local", "local1", "dask1", "dask2") if name in args.topk_paths.split(","))
    if "local" not in paths:
        raise SystemExit("--topk-paths must include local: every path is compared with it")
    every = ("local", "local1", "dask1", "dask2")  # a path left out keeps an empty list: its figures read nan
    walls: dict[str, list[float]] = {name: [] for name in every}
    cpus: dict[str, list[float]] = {name: [] for name in every}
    startups: dict[str, list[float]] = {name: [] for name in every}
    ceilings = [parallel_ceiling()]
    expected = None
    for _ in range(args.topk_rounds):
        for name in ("local", "local1"):
            if name not in paths:
                continue
            wall, cpu = _topk_local(topk, ranges, key, spec, columns, root / f"topk_{name}", name == "local1")
            walls[name].append(wall)
            cpus[name].append(cpu)
            expected = pd.read_parquet(root / "topk_local") if expected is None else expected
            pd.testing.assert_frame_equal(pd.read_parquet(root / f"topk_{name}"), expected)
        for workers in (1, 2):
            if f"dask{workers}" not in paths:
                continue
            target = root / f"topk_dask_{workers}.parquet"
            wall, cpu, startup = _topk_dask(topk, workers, key, spec, overrides, store, tag, n_users, target)
            walls[f"dask{workers}"].append(wall)
            cpus[f"dask{workers}"].append(cpu)
            startups[f"dask{workers}"].append(startup)
            pd.testing.assert_frame_equal(pd.read_parquet(target), expected)  # same rows, order and values
        ceilings.append(parallel_ceiling())
    best = {name: min(values, default=float("nan")) for name, values in walls.items()}
    lines = [
        f"batch top-{spec.evaluation.top_k}: {n_users:,} users x {args.topk_items:,} items, bundle {tag}; "
        f"best of {args.topk_rounds} round(s) ({', '.join(paths)} in turn)",
        "",
        f"{'path':<28}{'wall s':>9}{'users/s':>10}{'speed-up':>10}{'efficiency':>12}   every round's wall s",
    ]
    labels = {"local": "local, 1 process", "local1": "local, 1 process, 1 thread"}
    labels |= {f"dask{n}": f"dask {n} worker(s) x 1 thread" for n in (1, 2)}
    for name in paths:
        workers = 2 if name == "dask2" else 1
        speedup = best["local"] / best[name]
        rounds = " / ".join(f"{w:.1f}" for w in walls[name])
        lines.append(
            f"{labels[name]:<28}{best[name]:>9.1f}{n_users / best[name]:>10,.0f}{speedup:>9.2f}x"
            f"{speedup / workers if name.startswith('dask') else 1:>11.0%}   {rounds}"
        )
    lines += [
        "",
        f"overhead at 1 worker vs local: {best['dask1'] / best['local'] - 1:+.0%}, "
        f"vs local at 1 thread (what a worker has): {best['dask1'] / best['local1'] - 1:+.0%}; "
        f"2 workers vs local: {best['local'] / best['dask2']:.2f}x, vs 1 worker: {best['dask1'] / best['dask2']:.2f}x; "
        "outputs identical",
        f"cluster start + bundle load: {max(startups['dask1'], default=float('nan')):.1f} s (1 worker), "
        f"{max(startups['dask2'], default=float('nan')):.1f} s (2)",
        "control (perfectly parallel CPU job, 2 processes vs 1), before and after each round: "
        + ", ".join(f"{c:.2f}x" for c in ceilings),
        "",
    ]
    for name in paths:
        cpu = min(cpus[name])
        lines.append(f"  topk {name:<8}{cpu:>8.1f} CPU s{n_users / cpu:>10,.0f} users/CPU-s (least of the rounds)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows to score (0: skip scoring)")
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--train-rows", type=int, default=200_000, help="rows generated for training (0: skip)")
    parser.add_argument("--topk-users", type=int, default=0, help="StreamRec users for the batch top-50 (0: skip)")
    parser.add_argument("--topk-items", type=int, default=5000)
    parser.add_argument("--topk-rounds", type=int, default=2, help="rounds of local, 1 and 2 workers (best counts)")
    parser.add_argument(
        "--topk-paths",
        default="local,local1,dask1,dask2",
        help="top-K paths to run, comma-separated (local always; drop local1 to save a single-threaded pass)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-bench-dask-") as tmp:
        root = Path(tmp)
        lines = []
        if args.rows:
            lines += bench_scoring(args, root)
        if args.train_rows:
            lines += ["", *bench_training(args)]
        if args.topk_users:
            lines += ["", *bench_topk(args, root)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
