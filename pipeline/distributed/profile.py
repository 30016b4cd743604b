"""The reference profile and PSI from per-partition pieces, equal to pipeline/contracts' on the whole table.

Bin edges are np.quantile's, found exactly (pipeline/distributed/exact.py); bin counts, null counts and
category counts are integers summed over partitions, so shares, PSI and statuses are those of the local
path. Mean and std are merged from per-partition sums (equal to the local float to ~1e-12 relative:
summation order differs); median, min and max are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.contracts.profile import (
    CATEGORICAL,
    NUMERIC,
    OTHER,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    bin_counts,
    category_counts,
    numeric_values,
)
from pipeline.contracts.psi import MEDIAN_SAMPLE, PsiResult, _status, psi_value, unit_factor
from pipeline.distributed.exact import median_ranks, quantile_ranks, select_ranks
from pipeline.spec.schema import ContractSpec

# ------------------------------------------------------------------ on the workers


def sorted_finite(frame: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for col in columns:
        v = numeric_values(frame[col])
        out[col] = np.sort(v[np.isfinite(v)])
    return out


def moments(sorted_cols: dict[str, np.ndarray]) -> dict[str, tuple[int, float, float, float, float]]:
    """(n, sum, M2 about the partition mean, min, max) per column."""
    out = {}
    for col, v in sorted_cols.items():
        if v.size:
            mean = float(np.mean(v))
            out[col] = (int(v.size), float(np.sum(v)), float(np.sum((v - mean) ** 2)), float(v[0]), float(v[-1]))
        else:
            out[col] = (0, 0.0, 0.0, np.inf, -np.inf)
    return out


def count_le(sorted_cols: dict[str, np.ndarray], pivots: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {c: np.searchsorted(sorted_cols[c], p, side="right") for c, p in pivots.items()}


def partition_counts(
    frame: pd.DataFrame, edges: dict[str, np.ndarray], categorical: list[str], sample: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Bin counts (+ NaN count) per numeric column against `edges`, category counts, rows; and, when
    `sample` = (offset of this partition's first row, step) is given, the values at global positions
    that are multiples of step (psi.py's strided sample for the median)."""
    out: dict[str, Any] = {"rows": len(frame), "numeric": {}, "categorical": {}, "sample": {}}
    for col, e in edges.items():
        v = numeric_values(frame[col])
        out["numeric"][col] = bin_counts(v, np.asarray(e, dtype=v.dtype))
        if sample is not None:
            offset, step = sample
            first = (-offset) % step
            out["sample"][col] = v[first::step]
    for col in categorical:
        out["categorical"][col] = category_counts(frame[col])
    return out


# ------------------------------------------------------------------ on the client


def _merge_moments(parts: list[tuple[int, float, float, float, float]]) -> tuple[int, float, float, float, float]:
    """Chan et al.: (n, mean, std, min, max) of the union."""
    n, mean, m2 = 0, 0.0, 0.0
    lo, hi = np.inf, -np.inf
    for pn, psum, pm2, pmin, pmax in parts:
        if not pn:
            continue
        pmean = psum / pn
        delta = pmean - mean
        total = n + pn
        m2 += pm2 + delta * delta * n * pn / total
        mean += delta * pn / total
        n = total
        lo, hi = min(lo, pmin), max(hi, pmax)
    return n, mean, float(np.sqrt(m2 / n)) if n else 0.0, lo, hi


def build_profile_distributed(client: Any, accepted: list[Any], contract: ContractSpec, bins: int | None = None):
    """`build_profile` over the accepted partitions (futures of frames on the workers)."""
    bins = bins or contract.profile.bins
    numeric = [n for n, s in contract.columns.items() if not s.unique and s.dtype in NUMERIC]
    categorical = [n for n, s in contract.columns.items() if not s.unique and s.dtype in CATEGORICAL]
    rows = client.gather(client.map(len, accepted, pure=False))
    columns = set(client.gather(client.submit(lambda f: list(f.columns), accepted[0]))) if accepted else set()
    numeric = [c for c in numeric if c in columns]
    categorical = [c for c in categorical if c in columns]
    prof = ReferenceProfile(contract=contract.name, bins=bins, rows=int(sum(rows)))
    if not accepted:
        return prof
    sorted_parts = client.map(sorted_finite, accepted, columns=numeric, pure=False)
    stats = client.gather(client.map(moments, sorted_parts, pure=False))
    merged = {c: _merge_moments([s[c] for s in stats]) for c in numeric}

    def count(pivots: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        got = client.gather([client.submit(count_le, s, pivots, pure=False) for s in sorted_parts])
        return {c: np.sum([g[c] for g in got], axis=0) for c in pivots}

    ranks, finishers = {}, {}
    for c in numeric:
        n = merged[c][0]
        if n:
            qr, qfinish = quantile_ranks(n, bins)
            mr, mfinish = median_ranks(n)
            ranks[c] = sorted(set(qr) | set(mr))
            finishers[c] = (qfinish, mfinish)
    values = select_ranks(count, ranks, {c: (merged[c][3], merged[c][4]) for c in ranks}) if ranks else {}
    edges = {c: np.unique(finishers[c][0](values[c])) if c in ranks else np.zeros(0) for c in numeric}
    medians = {c: finishers[c][1](values[c]) for c in ranks}
    counted = client.gather(client.map(partition_counts, accepted, edges=edges, categorical=categorical, pure=False))
    total_rows = prof.rows
    for c in numeric:
        counts = np.sum([p["numeric"][c] for p in counted], axis=0)
        n_valid = int(counts[:-1].sum())
        shares = (counts[:-1] / n_valid).tolist() if n_valid else [0.0] * (len(edges[c]) + 1)
        n, mean, std, lo, hi = merged[c]
        prof.numeric[c] = NumericProfile(
            edges=edges[c].tolist(),
            shares=shares,
            mean=float(mean) if n else 0.0,
            std=std if n else 0.0,
            median=medians.get(c, 0.0),
            min=float(lo) if n else 0.0,
            max=float(hi) if n else 0.0,
            null_rate=float(counts[-1] / total_rows) if total_rows else 0.0,
            count=n_valid,
            unit=contract.columns[c].unit,
        )
    for c in categorical:
        counts, nulls = _sum_categories([p["categorical"][c] for p in counted])
        total = sum(counts.values())
        allowed = contract.columns[c].allowed
        keys = [str(a) for a in allowed] if allowed is not None else sorted(counts)
        shares = {k: (counts.get(k, 0) / total if total else 0.0) for k in keys}
        other = sum(n for k, n in counts.items() if k not in shares)
        shares[OTHER] = other / total if total else 0.0
        prof.categorical[c] = CategoricalProfile(
            shares=shares, null_rate=nulls / total_rows if total_rows else 0.0, count=total
        )
    return prof


def _sum_categories(parts: list[tuple[dict[str, int], int]]) -> tuple[dict[str, int], int]:
    counts: dict[str, int] = {}
    nulls = 0
    for part, n in parts:
        nulls += n
        for k, v in part.items():
            counts[k] = counts.get(k, 0) + v
    return counts, nulls


def psi_against_distributed(
    client: Any, profile: ReferenceProfile, accepted: list[Any], warning: float = 0.10, alert: float = 0.25
) -> dict[str, PsiResult]:
    """`psi_against` over the accepted partitions: same counts, same strided median sample, same results."""
    if not accepted:
        return {}
    columns = set(client.gather(client.submit(lambda f: list(f.columns), accepted[0])))
    num = [c for c in profile.numeric if c in columns]
    cat = [c for c in profile.categorical if c in columns]
    rows = client.gather(client.map(len, accepted, pure=False))
    total = int(sum(rows))
    step = max(1, total // MEDIAN_SAMPLE)
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int).tolist()
    edges = {c: np.asarray(profile.numeric[c].edges, dtype=np.float64) for c in num}
    counted = client.gather(
        [
            client.submit(partition_counts, f, edges, cat, (off, step), pure=False)
            for f, off in zip(accepted, offsets, strict=True)
        ]
    )
    out: dict[str, PsiResult] = {}
    for c in num:
        ref = profile.numeric[c]
        counts = np.sum([p["numeric"][c] for p in counted], axis=0)
        n = int(counts[:-1].sum())
        shares = counts[:-1] / n if n else np.zeros(len(ref.shares))
        psi = psi_value(np.asarray(ref.shares), shares) if n else 0.0
        status = _status(psi, n, warning, alert)
        res = PsiResult(c, psi, status, n, float(counts[-1] / total) if total else 0.0, ref.null_rate)
        if status in ("WARNING", "ALERT"):
            sample = np.concatenate([p["sample"][c] for p in counted])
            sample = sample[np.isfinite(sample)]
            if sample.size:
                res.suspected_unit_change = unit_factor(ref, float(np.median(sample)), float(np.mean(sample)))
            res.message = (
                f"looks like a unit change ({res.suspected_unit_change})"
                if res.suspected_unit_change
                else f"distribution shift (PSI {psi:.3f})"
            )
        elif status == "insufficient_data":
            res.message = f"only {n} non-null values (< 100); PSI not judged"
        out[c] = res
    for c in cat:
        ref = profile.categorical[c]
        counts, nulls = _sum_categories([p["categorical"][c] for p in counted])
        n = sum(counts.values())
        keys = [k for k in ref.shares if k != OTHER]
        cur = np.array([counts.get(k, 0) for k in keys] + [n - sum(counts.get(k, 0) for k in keys)], dtype=np.float64)
        refv = np.array([ref.shares[k] for k in keys] + [ref.shares.get(OTHER, 0.0)])
        psi = psi_value(refv, cur / n) if n else 0.0
        res = PsiResult(c, psi, _status(psi, n, warning, alert), n, nulls / total if total else 0.0, ref.null_rate)
        if int(cur[-1]):
            res.message = f"{int(cur[-1])} value(s) outside the reference categories"
        out[c] = res
    return out
