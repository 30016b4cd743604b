"""Benchmark: `keel backtest` over 365 days of history (target: under 5 s), vs a plain pandas scan.

Usage: python bench/bench_backtest.py [--days 365] [--features 10] [--quick] [--repeat 3]

The history is the slow-population-shift incident stretched to `--days`, with `--features` PSI
columns and a trending-style spike every 60 days, written to Parquet. Keel's side is what the
command does: read and check the file, replay every cron firing and every day's facts through
specs/streamrec.yaml's triggers (dedup, rearm, records) and gate every retrain's model, render
the timeline. The baseline is the bare arithmetic of the same triggers in pandas (max PSI per
day vs psi_above, the rolling-mean decline vs max_relative_decline), without dedup, cron, gates
or reasons: it shows what the bookkeeping costs. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.backtest.history import read_history  # noqa: E402
from pipeline.backtest.incidents import slow_population_shift  # noqa: E402
from pipeline.backtest.render import render_text  # noqa: E402
from pipeline.backtest.replay import backtest  # noqa: E402
from pipeline.spec.load import load_spec  # noqa: E402


def history(days: int, features: int) -> pd.DataFrame:
    frame = slow_population_shift(days=days, shift_day=days // 3).history
    rng = np.random.default_rng(0)
    for i in range(features - 5):
        frame[f"psi.extra_{i}"] = rng.uniform(0.005, 0.05, days)
    frame.loc[frame.index % 60 == 59, "psi.item_id"] = 0.4
    return frame


def keel(path: Path, spec) -> tuple[float, int]:
    start = time.perf_counter()
    timeline = backtest(spec, read_history(path))
    render_text(timeline)
    return time.perf_counter() - start, len(timeline.evaluations)


def plain(path: Path, psi_above: float, decline: float, window: int) -> tuple[float, int]:
    start = time.perf_counter()
    frame = pd.read_parquet(path).sort_values("date")
    drift = frame.filter(like="psi.").max(axis=1) > psi_above
    metric = frame["metric.ndcg@10"]
    baseline = metric.shift(1).rolling(window, min_periods=3).mean()
    perf = (baseline - metric) / baseline > decline
    return time.perf_counter() - start, int(drift.sum() + perf.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat (the history stays 365 days: it is small)")
    args = ap.parse_args()
    repeat = 1 if args.quick else args.repeat
    spec = load_spec(REPO / "specs" / "streamrec.yaml").spec
    perf = spec.triggers.performance
    window = int(perf.baseline_window.rstrip("d")) if perf and perf.baseline_window.endswith("d") else 7
    with tempfile.TemporaryDirectory(prefix="keel-bench-backtest-") as tmp:
        path = Path(tmp) / "history.parquet"
        history(args.days, args.features).to_parquet(path, index=False)
        k = min((keel(path, spec) for _ in range(repeat)), key=lambda r: r[0])
        p = min(
            (plain(path, spec.triggers.drift.psi_above, perf.max_relative_decline, window) for _ in range(repeat)),
            key=lambda r: r[0],
        )
    print(f"history: {args.days} days x {args.features} PSI features; best of {repeat}")
    print(f"keel backtest: {k[0]:.3f} s ({k[1]} evaluations recorded with reasons; target < 5 s)")
    print(f"plain pandas threshold scan: {p[0]:.3f} s ({p[1]} raw threshold crossings, no dedup/cron/gates)")
    print(f"ratio keel/plain: {k[0] / p[0]:.1f}x")


if __name__ == "__main__":
    main()
