"""Benchmark: Keel validate_frame and psi_against vs hand-vectorised numpy baselines.

Usage: python bench/bench_validate.py [--rows 1000000 10000000] [--quick]
Prints figures (best of 3). The only assertions check that Keel and the numpy baseline agree on
which rows are accepted and which are quarantined, so both sides do the same job.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from pipeline.contracts.profile import build_profile
from pipeline.contracts.psi import psi_against
from pipeline.contracts.result import ROW_COL
from pipeline.contracts.validate import validate_frame
from pipeline.spec.schema import ContractSpec

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
FLOATS = [f"f{i}" for i in range(7)]
INTS = ["i0", "i1"]
CAT = "plan"
PLANS = ["basic", "standard", "premium", "family"]


def contract(engine: str = "keel") -> ContractSpec:
    cols: dict = {f: {"dtype": "float", "min": 0, "max": 1000} for f in FLOATS}
    cols |= {i: {"dtype": "int", "min": 0, "max": 500} for i in INTS}
    cols[CAT] = {"dtype": "category", "allowed": PLANS}
    return ContractSpec(name="bench", engine=engine, max_quarantine_fraction=1.0, columns=cols)


def frame(n: int, seed: int = 0, bad: float = 0.005) -> pd.DataFrame:
    """10 features; about `bad` of the rows get one violation (NaN, inf, out of range, unknown plan)."""
    rng = np.random.default_rng(seed)
    data: dict = {f: rng.uniform(0, 1000, n) for f in FLOATS}
    data |= {i: rng.integers(0, 501, n) for i in INTS}
    data[CAT] = pd.Categorical.from_codes(rng.integers(0, 4, n), categories=[*PLANS, "gold"])
    df = pd.DataFrame(data)
    rows = rng.choice(n, int(n * bad), replace=False)
    cols = rng.integers(0, 10, len(rows))
    for k, col in enumerate(FLOATS + INTS + [CAT]):
        r = rows[cols == k]
        if col in FLOATS:
            df.loc[r, col] = rng.choice([np.nan, np.inf, -1.0, 2000.0], len(r))
        elif col in INTS:
            df.loc[r, col] = -1
        else:
            df.loc[r, col] = "gold"
    return df


def numpy_baseline(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Same rules, hand-vectorised: accepted and quarantined row indices."""
    bad = np.zeros(len(df), dtype=bool)
    for f in FLOATS:
        v = df[f].to_numpy()
        bad |= ~((v >= 0) & (v <= 1000))
    for i in INTS:
        v = df[i].to_numpy()
        bad |= (v < 0) | (v > 500)
    cat = df[CAT].array
    allowed = np.isin(np.arange(len(cat.categories)), [cat.categories.get_loc(p) for p in PLANS])
    bad |= ~allowed[cat.codes]
    return np.flatnonzero(~bad), np.flatnonzero(bad)


def best(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_validate(n: int) -> None:
    df = frame(n)
    c = contract()
    r = validate_frame(df, c)
    a, q = numpy_baseline(df)
    # apples to apples: both sides must reach the same split, row for row (frame() has a RangeIndex)
    assert np.array_equal(np.sort(r.quarantined[ROW_COL].to_numpy()), q), "quarantined rows differ from the baseline"
    assert np.array_equal(r.accepted.index.to_numpy(), a), "accepted rows differ from the baseline"
    assert r.rows_in == len(r.accepted) + len(r.quarantined)
    t_keel = best(lambda: validate_frame(df, c))
    t_np = best(lambda: numpy_baseline(df))
    print(
        f"validate {n:>11,} rows: keel {n / t_keel / 1e6:7.2f} M rows/s ({t_keel:.3f} s), "
        f"numpy {n / t_np / 1e6:7.2f} M rows/s ({t_np:.3f} s), ratio {t_keel / t_np:.2f}x, "
        f"quarantined {len(r.quarantined):,}"
    )
    if n <= 1_000_000:
        cp = contract("pandera")
        t_pa = best(lambda: validate_frame(df, cp), repeat=1)
        print(f"  pandera engine: {n / t_pa / 1e6:7.2f} M rows/s ({t_pa:.3f} s), ratio {t_pa / t_np:.2f}x vs numpy")


def naive_psi(ref: pd.DataFrame, cur: pd.DataFrame, bins: int = 10) -> dict[str, float]:
    out = {}
    for f in ref.columns:
        r, a = ref[f].to_numpy(), cur[f].to_numpy()
        edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        e = np.clip(np.histogram(r, edges)[0] / len(r), 1e-4, None)
        c = np.clip(np.histogram(a, edges)[0] / len(a), 1e-4, None)
        out[f] = float(np.sum((c - e) * np.log(c / e)))
    return out


def bench_psi(n_cur: int, n_ref: int) -> None:
    rng = np.random.default_rng(1)
    names = [f"x{i}" for i in range(10)]
    ref = pd.DataFrame({k: rng.lognormal(3, 0.5, n_ref) for k in names})
    cur = pd.DataFrame({k: rng.lognormal(3, 0.5, n_cur) for k in names})
    c = ContractSpec(name="psi", columns={k: {"dtype": "float"} for k in names})
    prof = build_profile(ref, c, 10)
    t_keel = best(lambda: psi_against(prof, cur))
    t_naive = best(lambda: naive_psi(ref, cur))
    print(
        f"psi 10 features {n_cur:,} vs {n_ref:,} ref: keel {t_keel:.3f} s, naive numpy {t_naive:.3f} s, "
        f"speed-up {t_naive / t_keel:.1f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--quick", action="store_true", help="200k rows only")
    args = ap.parse_args()
    rows = [200_000] if args.quick else args.rows
    print(f"cores: {os.cpu_count()}, numpy {np.__version__}, pandas {pd.__version__}")
    for n in rows:
        bench_validate(n)
    bench_psi(max(rows), max(rows) // 10)


if __name__ == "__main__":
    main()
