"""Benchmark: `keel score` on 1M rows vs a plain LightGBM `predict` on the same frame, same run.

Usage: python bench/bench_score.py [--rows 1000000] [--example credit] [--repeat 3]

The example's spec (examples/credit by default: 14 columns, nulls, categoricals, two derived
features) is run once with `keel run` (in-process, one Prefect test server, not timed) to register
a LightGBM champion. Its table is then resampled with replacement to --rows rows (seed 0, label
dropped) into one Parquet file, and scored:

- **keel score** (in-process, its Prefect flow included): read the file, the contract in scoring
  mode (every rule, quarantine), the bundle's derived features, `predict_proba`, rank, write Parquet.
- **keel, scoring only**: `pipeline.scoring.command.score_frame` on the frame already read (contract,
  derived features, predict, rank; no file IO, no flow).
- **plain**: read the same file with pandas, compute the two derived features, cast the
  categoricals to the booster's levels, `booster.predict` with the same booster (every core),
  write Parquet with the probabilities. Plain predict alone is timed too.

Prints rows/s and the ratio keel/plain for end to end and for scoring only; target >= 0.8x
without reasons. Reported, not asserted. The best of --repeat is kept for each side.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SPECS = {"credit": "credit.yaml", "attrition": "attrition.yaml", "default": "default.yaml"}


def keel(*args: str) -> dict[str, Any]:
    from pipeline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    payload = json.loads(out.getvalue().strip().splitlines()[-1])
    if code != 0:
        raise RuntimeError(f"keel {' '.join(args)} exited {code}: {payload}")
    return payload


def best_of(repeat: int, fn) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--example", choices=sorted(SPECS), default="credit")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import importlib.util

    import prefect  # noqa: F401  (before the harness: its log handler keeps the stream it finds)
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.data.derived import add_derived
    from pipeline.registry import BundleStore
    from pipeline.registry.tabular import load_tabular_bundle
    from pipeline.scoring.command import score_frame
    from pipeline.spec.load import load_spec

    folder = REPO / "examples" / args.example
    with tempfile.TemporaryDirectory(prefix="keel-bench-score-") as tmp:
        work = Path(tmp)
        os.environ["BENTOML_HOME"] = str(work / "bentoml")
        os.chdir(work)
        spec_path = work / SPECS[args.example]
        shutil.copy(folder / SPECS[args.example], spec_path)
        module_spec = importlib.util.spec_from_file_location("prepare", folder / "prepare.py")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        table = module.write(work / f"{args.example}.parquet")
        loaded = load_spec(spec_path)
        spec = loaded.spec
        frame = pd.read_parquet(table).drop(columns=[spec.data.label])
        big = frame.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)
        big.to_parquet(work / "big.parquet", index=False)
        del big
        settings = {PREFECT_HOME: work / "prefect", PREFECT_LOCAL_STORAGE_PATH: work / "prefect" / "storage"}
        with temporary_settings(settings), prefect_test_harness(server_startup_timeout=180):
            # a LightGBM champion: the spec as written, with the family pinned (the benchmark is about predict)
            run = keel("run", str(spec_path), "candidates=[]")
            bundle = load_tabular_bundle(BundleStore(work / "bentoml").get(run["bundle"]))
            assert bundle.model.family == "lightgbm", bundle.model.family
            out = work / "keel.parquet"
            keel_e2e, scored = best_of(
                args.repeat,
                lambda: keel("score", str(spec_path), "--data", str(work / "big.parquet"), "--out", str(out)),
            )
            assert scored["rows_scored"] + scored["rows_quarantined"] == args.rows, scored
        rows_frame = pd.read_parquet(work / "big.parquet")
        keel_only, result = best_of(args.repeat, lambda: score_frame(spec, bundle, rows_frame))
        booster = bundle.model.booster
        levels = bundle.model.categorical_levels

        def plain_prepare(df: pd.DataFrame) -> pd.DataFrame:
            x = add_derived(df, bundle.derived) if bundle.derived else df
            x = x[bundle.model.features].copy()
            for name, cats in levels.items():
                x[name] = pd.Categorical(x[name].astype("object"), categories=cats)
            return x

        def plain_e2e() -> np.ndarray:
            df = pd.read_parquet(work / "big.parquet")
            p = booster.predict(plain_prepare(df), num_threads=0)
            pd.DataFrame({"probability": p}).to_parquet(work / "plain.parquet", index=False)
            return p

        plain_full, p_plain = best_of(args.repeat, plain_e2e)
        prepared = plain_prepare(rows_frame)
        plain_only, _ = best_of(args.repeat, lambda: booster.predict(prepared, num_threads=0))
        keel_p = pd.read_parquet(out).sort_values("row")["probability"].to_numpy()
        same = float(np.max(np.abs(keel_p - p_plain))) if len(keel_p) == len(p_plain) else float("nan")

    n = args.rows
    load = os.getloadavg()
    print(
        f"{args.example}: {n:,} rows, {len(bundle.model.features)} features, {bundle.model.num_trees} trees; "
        f"load average {load[0]:.1f} on {os.cpu_count()} cores; best of {args.repeat}"
    )
    print("| path | wall (s) | rows/s | keel / plain |")
    print("|---|---:|---:|---:|")
    print(
        f"| keel score (file in, contract, derived, predict, rank, file out; Prefect flow) | {keel_e2e:.2f} | "
        f"{n / keel_e2e:,.0f} | {plain_full / keel_e2e:.2f}x |"
    )
    print(f"| plain: read, derived, cast, booster.predict, write | {plain_full:.2f} | {n / plain_full:,.0f} | |")
    print(
        f"| keel score_frame (contract, derived, predict, rank) | {keel_only:.2f} | {n / keel_only:,.0f} | "
        f"{plain_only / keel_only:.2f}x |"
    )
    print(f"| plain booster.predict on the prepared frame | {plain_only:.2f} | {n / plain_only:,.0f} | |")
    print(f"max |keel - plain| probability: {same:.1e}; accepted by the contract: {result.contract.rows_accepted:,}")


if __name__ == "__main__":
    main()
