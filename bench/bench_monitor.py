"""Benchmark: Keel's daily monitor vs a plain numpy PSI over the same reference bins, in one process.

Usage: python bench/bench_monitor.py [--rows 10000000] [--ref-rows 1000000] [--quick]
10 numeric features (2 of them drifted, one by a x60 unit change) of N current rows vs a
profile of the 1M-row reference. Keel: `monitor()` — PSI per feature with levels, lineage
groups, unit-change check of the shifted features and the report object. Baseline: per
column `np.searchsorted` into the same reference edges + `np.bincount` + the PSI formula,
single-threaded, the code one would write by hand. Best of 3 each. The only assertion checks
that both sides compute the same PSI, so they do the same job. Target: Keel within 1.5x.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from pipeline.contracts.profile import ReferenceProfile
from pipeline.monitoring import build_reference, monitor
from pipeline.spec.schema import Spec

FEATURES = [f"x{i}" for i in range(10)]
EPS = 1e-4


def spec() -> Spec:
    columns = {"id": {"dtype": "str", "unique": True}, **{f: {"dtype": "float"} for f in FEATURES}}
    return Spec.model_validate(
        {
            "name": "bench-monitor",
            "task": "binary_classification",
            "data": {"source": "synthetic:none", "entity_id": "id"},
            "contract": {"name": "bench", "columns": columns},
            "model": {"family": "lightgbm", "features": FEATURES},
        }
    )


def frame(n: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f: rng.lognormal(3, 0.5, n) for f in FEATURES}
    if drift:
        data["x0"] = data["x0"] * 1.3  # a shift
        data["x1"] = data["x1"] * 60  # a unit change
    return pd.DataFrame(data)


def plain_psi(profile: ReferenceProfile, cur: pd.DataFrame) -> dict[str, float]:
    out = {}
    for f in FEATURES:
        ref = profile.numeric[f]
        edges = np.asarray(ref.edges)
        counts = np.bincount(np.searchsorted(edges, cur[f].to_numpy(), side="left"), minlength=len(edges) + 1)
        e = np.clip(np.asarray(ref.shares), EPS, None)
        a = np.clip(counts / counts.sum(), EPS, None)
        out[f] = float(np.sum((a - e) * np.log(a / e)))
    return out


def best(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--ref-rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="1M current rows")
    args = ap.parse_args()
    rows = 1_000_000 if args.quick else args.rows
    print(f"cores: {os.cpu_count()}, numpy {np.__version__}, pandas {pd.__version__}")
    s = spec()
    ref = frame(args.ref_rows, 1, drift=False)
    reference = build_reference(ref, s.contract, {}, 10, None, "reference")
    cur = frame(rows, 2, drift=True)
    t_keel, report = best(lambda: monitor(s, cur, reference))
    t_plain, plain = best(lambda: plain_psi(reference.profile, cur))
    keel_psi = report.psi()
    assert all(abs(keel_psi[f] - plain[f]) <= 1e-9 * max(1.0, plain[f]) for f in FEATURES), (keel_psi, plain)
    levels = {f: report.features[f].level for f in ("x0", "x1", "x2")}
    units = [(u.feature, u.factor) for u in report.unit_changes]
    print(f"monitor 10 features x {rows:,} rows vs {args.ref_rows:,}-row reference ({levels}, units {units})")
    print(f"  keel monitor():  {t_keel:.3f} s  {rows / t_keel / 1e6:6.1f} M rows/s")
    print(f"  plain numpy PSI: {t_plain:.3f} s  {rows / t_plain / 1e6:6.1f} M rows/s")
    verdict = "met" if t_keel <= 1.5 * t_plain else "NOT met"
    print(f"  ratio keel/plain: {t_keel / t_plain:.2f}x (target <= 1.5x: {verdict})")


if __name__ == "__main__":
    main()
