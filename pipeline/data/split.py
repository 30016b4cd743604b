"""Split a dataset into train/valid/test: by time (no future leakage), at random, stratified by
label (every part keeps the class balance: a 5% positive class still reaches test), or by group
(no entity in two parts, so a customer's rows cannot leak from train into test).

Time cuts snap to timestamp boundaries so rows sharing a timestamp (a weekly snapshot)
never straddle train and test; with few distinct timestamps the sizes therefore follow
the snapshots rather than the exact fractions. Group cuts likewise follow whole groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.spec.schema import Spec, SplitSpec, split_method

PARTS = ("train", "valid", "test")


def split_frame(
    df: pd.DataFrame,
    split: SplitSpec,
    timestamp: str | None,
    seed: int,
    labels: np.ndarray | None = None,
    groups: pd.Series | None = None,
) -> dict[str, pd.DataFrame]:
    """Return {"train", "valid", "test"}; time splits are time-ordered, the others keep the input order.

    `labels` (0/1 per row) are needed by `stratified`, `groups` (one value per row) by `group`.
    Without a declared method: time when `timestamp` is given, else stratified (random without labels).
    """
    n = len(df)
    n_test = round(n * split.test_fraction)
    n_valid = round(n * split.valid_fraction)
    method = split_method(split, timestamp)
    if method == "stratified" and labels is None and split.method is None:
        method = "random"
    rng = np.random.default_rng(seed % 2**64)
    if method in ("random", "stratified", "group"):
        if method == "random":
            order = rng.permutation(n)
            parts = np.split(order, [n_test, n_test + n_valid])
        elif method == "stratified":
            parts = _stratified(labels, split, rng)
        else:
            parts = _grouped(groups, split, rng)
        test, valid, train = parts
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


def _stratified(labels: np.ndarray | None, split: SplitSpec, rng: np.random.Generator) -> list[np.ndarray]:
    """[test, valid, train] positions with each class cut at the same fractions."""
    if labels is None:
        raise ValueError("split method 'stratified' needs the label: set data.label or use method 'random'.")
    labels = np.asarray(labels)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_test, n_valid = round(len(rows) * split.test_fraction), round(len(rows) * split.valid_fraction)
        for part, chunk in zip(parts, np.split(rows, [n_test, n_test + n_valid]), strict=True):
            part.append(chunk)
    return [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts]


def _grouped(groups: pd.Series | None, split: SplitSpec, rng: np.random.Generator) -> list[np.ndarray]:
    """[test, valid, train] positions where every group lies in one part; groups are drawn at random."""
    if groups is None:
        raise ValueError("split method 'group' needs a group column: set data.split.group_column or data.entity_id.")
    if groups.isna().any():
        missing = int(groups.isna().sum())
        raise ValueError(f"cannot split by group: column {groups.name!r} has {missing} missing values.")
    codes, uniques = pd.factorize(groups)
    if len(uniques) < 3:
        raise ValueError(f"cannot split by group: column {groups.name!r} has {len(uniques)} distinct values (need 3+).")
    order = rng.permutation(len(uniques))
    sizes = np.bincount(codes, minlength=len(uniques))[order]
    ends = np.cumsum(sizes)
    n = len(codes)
    test_end = _group_cut(ends, round(n * split.test_fraction), 1)
    valid_end = max(_group_cut(ends, round(n * (split.test_fraction + split.valid_fraction)), 0), test_end)
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[order] = np.arange(len(uniques))
    where = rank[codes]
    return [np.flatnonzero(where < test_end), np.flatnonzero((where >= test_end) & (where < valid_end)),
            np.flatnonzero(where >= valid_end)]  # fmt: skip


def _group_cut(ends: np.ndarray, target: int, lowest: int) -> int:
    """How many of the shuffled groups make up the row count nearest `target` (at least `lowest` groups)."""
    if target <= 0:
        return 0
    k = int(np.searchsorted(ends, target, side="left"))  # ends[k] >= target
    below = ends[k - 1] if k > 0 else 0
    count = k if k > 0 and target - below <= ends[min(k, len(ends) - 1)] - target else k + 1
    return min(max(count, lowest), len(ends) - 1)


def split_line(spec: Spec) -> dict[str, str | None]:
    """Which split method applies to `spec` and why, for `keel check`."""
    data = spec.data
    method = split_method(data.split, data.timestamp)
    if data.split.method is not None:
        why = "declared"
    else:
        why = f"default: data.timestamp is {data.timestamp}" if data.timestamp else "default: no data.timestamp"
    detail = {"time": f"by {data.timestamp}", "group": f"by {data.split.group_column or data.entity_id}"}
    text = f"split: {method} ({why}){' ' + detail[method] if method in detail else ''}, seed {data.seed}"
    return {"method": method, "why": why, "text": text}
