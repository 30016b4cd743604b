"""Split a dataset into train/valid/test, by time (no future leakage) or at random.

Time cuts snap to timestamp boundaries so rows sharing a timestamp (a weekly snapshot)
never straddle train and test; with few distinct timestamps the sizes therefore follow
the snapshots rather than the exact fractions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.spec.schema import SplitSpec

PARTS = ("train", "valid", "test")


def split_frame(df: pd.DataFrame, split: SplitSpec, timestamp: str | None, seed: int) -> dict[str, pd.DataFrame]:
    """Return {"train", "valid", "test"}; time splits are time-ordered, random ones keep the input order."""
    n = len(df)
    n_test = round(n * split.test_fraction)
    n_valid = round(n * split.valid_fraction)
    if split.method == "random":
        order = np.random.default_rng(seed % 2**64).permutation(n)
        test, valid, train = np.split(order, [n_test, n_test + n_valid])
        return {name: df.iloc[np.sort(rows)] for name, rows in zip(PARTS, (train, valid, test), strict=True)}
    if timestamp is None:
        raise ValueError("split method 'time' needs a timestamp column: set data.timestamp or use method 'random'.")
    if timestamp not in df.columns:
        raise ValueError(f"split method 'time' uses timestamp column {timestamp!r}, which the data does not have.")
    times = _sortable(df[timestamp])
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    test_start = _snap(ordered, n - n_test, lowest=1)
    if n_test > 0 and test_start >= n:
        raise ValueError(
            f"cannot split by time: {timestamp!r} has a single distinct value, so no test slice can follow training."
        )
    valid_start = min(_snap(ordered, n - n_test - n_valid, lowest=1), test_start)
    cuts = {"train": order[:valid_start], "valid": order[valid_start:test_start], "test": order[test_start:]}
    return {name: df.iloc[rows] for name, rows in cuts.items()}


def _sortable(column: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds (or numbers); missing ones cannot be placed in time."""
    if column.isna().any():
        raise ValueError(
            f"cannot split by time: timestamp column {column.name!r} has {int(column.isna().sum())} missing values."
        )
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64)
    try:
        return pd.to_datetime(column).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot split by time: timestamp column {column.name!r} is not a time ({exc}).") from None


def _snap(ordered: np.ndarray, position: int, lowest: int) -> int:
    """Move a cut to the nearest timestamp boundary, keeping at least `lowest` rows before it when possible."""
    n = len(ordered)
    if position >= n:
        return n
    if position <= 0:
        position = 0
    start = int(np.searchsorted(ordered, ordered[position], side="left"))
    end = int(np.searchsorted(ordered, ordered[position], side="right"))
    nearest = start if position - start <= end - position else end
    if nearest < lowest:
        nearest = end
    if nearest >= n and start >= lowest:
        nearest = start
    return nearest
