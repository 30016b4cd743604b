"""PSI per feature against a reference profile, mapped to the spec's levels.

Numeric features are counted into the reference's pre-computed quantile bins with the
chunked cumulative comparison of `bin_counts` (no sort, no binary search), one column per
thread: numpy drops the GIL there. Categorical features compare category shares, with
everything the reference never saw pooled into its "other" slot, so a category that did
not exist at training time raises PSI instead of vanishing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from pipeline.contracts.profile import OTHER, CategoricalProfile, NumericProfile, ReferenceProfile, bin_counts
from pipeline.contracts.psi import psi_value

LEVELS = ("OK", "WARNING", "ALERT", "CRITICAL")
NO_DATA = "NO_DATA"  # present but (nearly) all null: PSI cannot be judged, which is itself a finding
MISSING = "MISSING"  # absent from the current data
NO_REFERENCE = "NO_REFERENCE"  # the reference profile does not cover it
MIN_COUNT = 100
SHIFTED = ("WARNING", "ALERT", "CRITICAL")


@dataclass(frozen=True)
class Thresholds:
    warning: float = 0.10
    alert: float = 0.25
    critical: float = 0.50

    def level(self, psi: float) -> str:
        if psi >= self.critical:
            return "CRITICAL"
        if psi >= self.alert:
            return "ALERT"
        return "WARNING" if psi >= self.warning else "OK"


def level_rank(level: str) -> int:
    """Order for "worst first": unknown states (missing, no data) rank with ALERT."""
    return {"OK": 0, "WARNING": 1, "ALERT": 2, "CRITICAL": 3}.get(level, 2 if level in (NO_DATA, MISSING) else -1)


@dataclass
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    psi: float | None
    level: str
    count: int
    null_rate: float | None
    ref_null_rate: float | None
    message: str = ""
    bins: list[str] = field(default_factory=list)  # bin labels, for charts and the JSON
    ref_shares: list[float] = field(default_factory=list)
    cur_shares: list[float] = field(default_factory=list)
    unseen: dict[str, int] = field(default_factory=dict)  # categorical values the reference never saw

    def to_dict(self) -> dict:
        return asdict(self)


def numeric_array(s: pd.Series) -> np.ndarray:
    """float64 with NaN for nulls; text columns (CSV) are parsed, unparseable values become NaN."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    inner = [f"({a:.4g}, {b:.4g}]" for a, b in pairwise(edges)]
    return [f"<= {edges[0]:.4g}", *inner, f"> {edges[-1]:.4g}"]


def numeric_drift(name: str, ref: NumericProfile, v: np.ndarray, thresholds: Thresholds) -> FeatureDrift:
    counts = bin_counts(v, np.asarray(ref.edges, dtype=np.float64))
    n = int(counts[:-1].sum())
    null_rate = float(counts[-1] / len(v)) if len(v) else None
    out = FeatureDrift(name, "numeric", None, NO_DATA, n, null_rate, ref.null_rate, bins=_bin_labels(ref.edges))
    out.ref_shares = list(ref.shares)
    if n < MIN_COUNT:
        out.message = _no_data(len(v), n, ref.null_rate)
        return out
    shares = counts[:-1] / n
    out.psi = psi_value(np.asarray(ref.shares), shares)
    out.level = thresholds.level(out.psi)
    out.cur_shares = shares.tolist()
    return out


def categorical_drift(name: str, ref: CategoricalProfile, s: pd.Series, thresholds: Thresholds) -> FeatureDrift:
    keys = [k for k in ref.shares if k != OTHER]
    vc = s.astype("string").value_counts(dropna=True)
    counts = {str(k): int(c) for k, c in vc.items() if c}
    n = sum(counts.values())
    null_rate = float(1 - n / len(s)) if len(s) else None
    out = FeatureDrift(name, "categorical", None, NO_DATA, n, null_rate, ref.null_rate, bins=[*keys, OTHER])
    out.ref_shares = [ref.shares[k] for k in keys] + [ref.shares.get(OTHER, 0.0)]
    out.unseen = {k: c for k, c in sorted(counts.items(), key=lambda kv: -kv[1]) if k not in ref.shares}
    if n < MIN_COUNT:
        out.message = _no_data(len(s), n, ref.null_rate)
        return out
    cur = np.array([counts.get(k, 0) for k in keys] + [sum(out.unseen.values())], dtype=np.float64) / n
    out.psi = psi_value(np.asarray(out.ref_shares), cur)
    out.level = thresholds.level(out.psi)
    out.cur_shares = cur.tolist()
    if out.unseen:
        seen_share = 1 - cur[-1]
        shown = ", ".join(list(out.unseen)[:5])
        out.message = (
            f"{sum(out.unseen.values()):,} value(s) in categories the reference never saw ({shown}); "
            f"{seen_share:.0%} of rows fall in known categories"
        )
    return out


def _no_data(rows: int, valid: int, ref_null_rate: float) -> str:
    if rows == 0:
        return "no rows in the current data"
    return (
        f"{rows - valid:,} of {rows:,} values are null (reference null rate {ref_null_rate:.1%}); "
        f"PSI needs at least {MIN_COUNT} values"
    )


def feature_drift(
    profile: ReferenceProfile,
    frame: pd.DataFrame,
    features: Iterable[str],
    thresholds: Thresholds,
    threads: int | None = None,
) -> dict[str, FeatureDrift]:
    """One FeatureDrift per requested feature, in the order given; never raises for a missing column."""
    features = list(features)
    out: dict[str, FeatureDrift] = {}
    numeric = [f for f in features if f in profile.numeric and f in frame.columns]
    workers = threads or min(len(numeric), os.cpu_count() or 1) or 1

    def one(name: str) -> FeatureDrift:
        return numeric_drift(name, profile.numeric[name], numeric_array(frame[name]), thresholds)

    if workers > 1 and len(numeric) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = dict(zip(numeric, pool.map(one, numeric), strict=True))
    else:
        done = {name: one(name) for name in numeric}
    for name in features:
        if name in done:
            out[name] = done[name]
        elif name not in frame.columns:
            out[name] = FeatureDrift(
                name, _kind(profile, name), None, MISSING, 0, None, None, f"{name!r} is absent from the current data"
            )
        elif name in profile.categorical:
            out[name] = categorical_drift(name, profile.categorical[name], frame[name], thresholds)
        else:
            out[name] = FeatureDrift(
                name, "unknown", None, NO_REFERENCE, len(frame), None, None, "the reference profile has no entry for it"
            )
    return out


def _kind(profile: ReferenceProfile, name: str) -> str:
    return "numeric" if name in profile.numeric else "categorical" if name in profile.categorical else "unknown"
