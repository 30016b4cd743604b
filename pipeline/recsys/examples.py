"""Training and evaluation examples for recommenders from an interaction log.

A global time split (one cut-off for everyone, not per user) is the only split that
cannot leak: every training interaction happens strictly before every test interaction,
so no model sees the future of any user; it is the default. Per-user time, leave-one-out
and random protocols (pipeline.recsys.splits) are there for logs evaluated the way papers
and benchmarks do. Ids become dense indices over the FULL item
table, so metrics rank the whole catalogue and never a sample. Rows that cannot be
placed (an item missing from the item table, a missing id or time) are quarantined
with a reason: counts in = accepted + quarantined, always.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.recsys.splits import TEST, TRAIN, VALID, RecSplit, assign_parts

SeenFrom = Literal["positive", "any"]


@dataclass(frozen=True)
class FeedbackColumns:
    """Where the log keeps user, item, time and feedback, and what counts as positive.

    label None: every row is a positive (a pure consumption log). rating_threshold set:
    explicit ratings become implicit feedback (label >= threshold is positive) and
    `positive` is ignored. Otherwise a row is positive when label == positive.
    """

    user: str
    item: str
    timestamp: str
    label: str | None = None
    positive: object = 1
    rating_threshold: float | None = None


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class IdMap:
    """External ids <-> dense indices 0..n-1; index i is `ids[i]`."""

    ids: np.ndarray

    def __post_init__(self) -> None:
        index = pd.Index(self.ids)
        if index.has_duplicates:
            dup = index[index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"ids must be unique; duplicated: {dup}.")

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Dense indices of `values` (int64), -1 where a value is not in the map."""
        return pd.Index(self.ids).get_indexer(pd.Index(values)).astype(np.int64)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class Part:
    """One time slice as dense indices; `rows` are positions (iloc) in the input frame."""

    rows: np.ndarray
    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    positive: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class RecExamples:
    """A leakage-free split with the matrices models and the evaluator need.

    train_positives: users x items, number of positive train interactions per pair.
    seen: users x items (0/1), the history that is excluded from recommendations and
      from relevant sets (train positives, or every train interaction with seen_from="any").
    valid_relevant / test_relevant: users x items (0/1), positive interactions of that part
      on items the user had not seen in train.
    test_users / valid_users: users with >= 1 relevant item AND a train history (warm).
    cold_test_users / cold_valid_users: users with relevant items but no train history;
      reported separately because history-based models cannot rank for them.
    """

    user_map: IdMap
    item_map: IdMap
    train: Part
    valid: Part
    test: Part
    valid_start: object
    test_start: object
    quarantine: pd.DataFrame
    n_input: int
    seen_from: SeenFrom
    split: str
    train_positives: sp.csr_matrix = field(repr=False)
    seen: sp.csr_matrix = field(repr=False)
    valid_relevant: sp.csr_matrix = field(repr=False)
    test_relevant: sp.csr_matrix = field(repr=False)
    valid_users: np.ndarray = field(repr=False)
    test_users: np.ndarray = field(repr=False)
    cold_valid_users: np.ndarray = field(repr=False)
    cold_test_users: np.ndarray = field(repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def counts(self) -> dict[str, int]:
        """Row and user counts for a report; input == train + valid + test + quarantined."""
        return {
            "input": self.n_input,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "quarantined": len(self.quarantine),
            "users": self.n_users,
            "items": self.n_items,
            "test_users": len(self.test_users),
            "cold_test_users": len(self.cold_test_users),
            "test_relevant": int(self.test_relevant[self.test_users].nnz),
            "cold_test_relevant": int(self.test_relevant[self.cold_test_users].nnz),
        }


def build_examples(
    interactions: pd.DataFrame,
    item_ids: np.ndarray | pd.Series,
    columns: FeedbackColumns,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    user_ids: np.ndarray | pd.Series | None = None,
    seen_from: SeenFrom = "positive",
    split: RecSplit | None = None,
) -> RecExamples:
    """Split `interactions` by global time cut-offs and index them against the item table.

    The newest `test_fraction` of accepted rows (by time) is test, the `valid_fraction`
    before it valid. Cut-offs are timestamps, and rows at a cut-off's exact time go to the
    later part, so every train time < every valid time < every test time. `item_ids` is the
    item table's id column, in the order that defines dense item indices. `user_ids`, when
    given, fixes the user indices and quarantines unknown users; otherwise users are the
    sorted distinct users of the accepted log. `split` (pipeline.recsys.splits) picks another
    protocol (per-user time, leave-one-out, random); its fractions replace the arguments.
    """
    split = split or RecSplit("global_time", valid_fraction, test_fraction)
    valid_fraction, test_fraction = split.valid_fraction, split.test_fraction
    _check_fractions(valid_fraction, test_fraction)
    if seen_from not in ("positive", "any"):
        raise ValueError(f"seen_from must be 'positive' or 'any', got {seen_from!r}.")
    needed = [columns.user, columns.item, columns.timestamp] + ([columns.label] if columns.label else [])
    missing = [c for c in needed if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {', '.join(missing)}.")
    if columns.label is None and columns.rating_threshold is not None:
        raise ValueError("rating_threshold needs a label column holding the ratings.")

    item_map = IdMap(np.asarray(item_ids))
    items = item_map.index(interactions[columns.item])
    times, time_ok = _times(interactions[columns.timestamp])
    positive, label_ok = _positive(interactions, columns)
    user_values = interactions[columns.user]
    user_ok = ~user_values.isna().to_numpy()
    if user_ids is not None:
        user_map = IdMap(np.asarray(user_ids))
    else:
        user_map = IdMap(np.sort(pd.unique(user_values[user_ok & (items >= 0) & time_ok & label_ok])))
    users = user_map.index(user_values)

    checks = {
        "missing user": ~user_ok,
        "missing item": interactions[columns.item].isna().to_numpy(),
        "missing or invalid timestamp": ~time_ok,
        "missing label": ~label_ok,
        "unknown item": items < 0,
        "unknown user": users < 0,
    }
    reason = np.select(list(checks.values()), list(checks), default="")  # first failing check names the row
    bad = reason != ""
    quarantine = interactions.iloc[np.flatnonzero(bad)].assign(reason=reason[bad])
    accepted = np.flatnonzero(~bad)
    if len(accepted) == 0:
        raise ValueError(f"no interaction could be placed: all {len(interactions)} rows were quarantined.")

    t = times[accepted]
    if split.method == "global_time":
        valid_start, test_start = _cutoffs(t, valid_fraction, test_fraction)
        code = np.where(t >= test_start, TEST, np.where(t >= valid_start, VALID, TRAIN))
    else:
        code = assign_parts(users[accepted], t, positive[accepted], split)
        valid_start, test_start = (_first_time(t[code == part], t.dtype) for part in (VALID, TEST))
    slices = {"train": accepted[code == TRAIN], "valid": accepted[code == VALID], "test": accepted[code == TEST]}
    if len(slices["train"]) == 0:
        raise ValueError("no interaction falls before the validation cut-off: the log has too few distinct times.")
    parts = {
        name: Part(rows=rows, users=users[rows], items=items[rows], times=times[rows], positive=positive[rows])
        for name, rows in slices.items()
    }
    shape = (len(user_map), len(item_map))
    train_positives = interaction_matrix(parts["train"], shape, positive_only=True)
    seen = _binary(train_positives if seen_from == "positive" else interaction_matrix(parts["train"], shape, False))
    valid_relevant = relevant_matrix(parts["valid"], seen)
    test_relevant = relevant_matrix(parts["test"], seen)
    valid_users, cold_valid = warm_and_cold_users(valid_relevant, seen)
    test_users, cold_test = warm_and_cold_users(test_relevant, seen)
    return RecExamples(
        user_map=user_map,
        item_map=item_map,
        train=parts["train"],
        valid=parts["valid"],
        test=parts["test"],
        valid_start=_as_time(valid_start, interactions[columns.timestamp]),
        test_start=_as_time(test_start, interactions[columns.timestamp]),
        quarantine=quarantine,
        n_input=len(interactions),
        seen_from=seen_from,
        split=split.method,
        train_positives=train_positives,
        seen=seen,
        valid_relevant=valid_relevant,
        test_relevant=test_relevant,
        valid_users=valid_users,
        test_users=test_users,
        cold_valid_users=cold_valid,
        cold_test_users=cold_test,
    )


def interaction_matrix(part: Part, shape: tuple[int, int], positive_only: bool = True) -> sp.csr_matrix:
    """Users x items CSR counting a part's interactions (only positives by default); indices sorted."""
    keep = part.positive if positive_only else np.ones(len(part), dtype=bool)
    data = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((data, (part.users[keep], part.items[keep])), shape=shape)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def relevant_matrix(part: Part, seen: sp.csr_matrix) -> sp.csr_matrix:
    """0/1 CSR of a part's positive (user, item) pairs minus the pairs in `seen`."""
    positives = _binary(interaction_matrix(part, seen.shape, positive_only=True))
    relevant = positives - positives.multiply(_binary(seen))
    relevant = sp.csr_matrix(relevant)
    relevant.eliminate_zeros()
    relevant.sort_indices()
    return relevant


def warm_and_cold_users(relevant: sp.csr_matrix, seen: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Users with >= 1 relevant item, split by whether they have any history in `seen`."""
    has_relevant = np.diff(relevant.indptr) > 0
    has_history = np.diff(sp.csr_matrix(seen).indptr) > 0
    return np.flatnonzero(has_relevant & has_history), np.flatnonzero(has_relevant & ~has_history)


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, copy=True)
    out.eliminate_zeros()
    out.data = np.ones_like(out.data)
    return out


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"valid_fraction ({valid_fraction}) and test_fraction ({test_fraction}) must be >= 0 "
            "and leave a share for training (sum < 1)."
        )


def _times(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Comparable times (int64 ns since the epoch, UTC, or float64 for numbers) and a mask of usable ones."""
    if _numeric(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.isfinite(values)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        parsed = column
    else:
        parsed = pd.to_datetime(column, errors="coerce", utc=True)
        # pandas infers one format from the first value; re-read the misses one by one rather than lose them
        retry = parsed.isna().to_numpy() & column.notna().to_numpy()
        if retry.any():
            parsed[retry] = pd.to_datetime(column[retry], errors="coerce", utc=True, format="mixed")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    ok = ~parsed.isna().to_numpy()
    values = np.zeros(len(column), dtype=np.int64)
    values[ok] = parsed[ok].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return values, ok


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)


def _as_time(value: float | int, column: pd.Series) -> object:
    """A cut-off in the column's own terms (a UTC Timestamp for times); None when the part is empty."""
    if value in (np.inf, np.iinfo(np.int64).max):
        return None
    return float(value) if _numeric(column) else pd.Timestamp(int(value))


def _positive(frame: pd.DataFrame, columns: FeedbackColumns) -> tuple[np.ndarray, np.ndarray]:
    """Whether each row is positive feedback, and whether its label is usable."""
    n = len(frame)
    if columns.label is None:
        return np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    label = frame[columns.label]
    ok = ~label.isna().to_numpy()
    if columns.rating_threshold is not None:
        ratings = pd.to_numeric(label, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        ok &= np.isfinite(ratings)
        return np.where(ok, ratings >= columns.rating_threshold, False), ok
    return (label == columns.positive).to_numpy(dtype=bool, na_value=False), ok


def _first_time(times: np.ndarray, dtype: np.dtype) -> float | int:
    """The earliest time of a part cut per user (its cut-offs differ by user); 'never' when empty."""
    if len(times):
        return times.min()
    return np.iinfo(np.int64).max if dtype.kind == "i" else np.inf


def _cutoffs(times: np.ndarray, valid_fraction: float, test_fraction: float) -> tuple[float | int, float | int]:
    """Start times of valid and test: the times at the fraction positions of the sorted log."""
    ordered = np.sort(times)
    n = len(ordered)
    n_test = round(n * test_fraction)
    n_valid = round(n * valid_fraction)
    end = np.iinfo(np.int64).max if ordered.dtype.kind == "i" else np.inf
    test_start = ordered[n - n_test] if n_test > 0 else end
    valid_start = ordered[n - n_test - n_valid] if n_valid > 0 else test_start
    return valid_start, test_start
