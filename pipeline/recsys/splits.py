"""Evaluation protocols for interaction logs: which accepted row goes to train, valid or test.

`data.split.method` of a recommendation spec:

* `global_time` (also spelled `time`): one cut-off for everyone; every train time < every
  valid time < every test time. The only protocol that cannot leak across users.
* `per_user_time`: each user's last `test_fraction` of interactions (or last `last_n`) is
  test, the same carve of what is left before it is valid. Users with fewer than
  `min_interactions` interactions stay in train (they are never evaluated).
* `leave_one_out`: each user's last positive interaction (and anything after it) is test,
  the positive before it valid; users with fewer than `min_interactions` positives stay in train.
* `random`: rows drawn at random (seeded) into test and valid.

Validation for tuning (the ranker, early stopping) is carved out of train the same way the
test part is carved out of the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

RecSplitMethod = Literal["global_time", "per_user_time", "leave_one_out", "random"]
TRAIN, VALID, TEST = 0, 1, 2


@dataclass(frozen=True)
class RecSplit:
    method: RecSplitMethod = "global_time"
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    last_n: int | None = None  # per_user_time: the last N interactions instead of a fraction
    min_interactions: int = 3  # per-user methods: users with fewer stay in train
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("global_time", "per_user_time", "leave_one_out", "random"):
            raise ValueError(f"unknown split method {self.method!r} for an interaction log.")
        if self.last_n is not None and self.last_n < 1:
            raise ValueError(f"last_n must be >= 1, got {self.last_n}.")
        if self.min_interactions < 2 and self.method in ("per_user_time", "leave_one_out"):
            raise ValueError("min_interactions must be >= 2: a user needs something left to train on.")

    @property
    def per_user(self) -> bool:
        return self.method in ("per_user_time", "leave_one_out")


def assign_parts(users: np.ndarray, times: np.ndarray, positive: np.ndarray, split: RecSplit) -> np.ndarray:
    """Part code (TRAIN, VALID, TEST) of each row; `global_time` is done by the caller (cut-off times)."""
    n = len(users)
    if split.method == "random":
        draw = np.random.default_rng(split.seed).random(n)
        valid_below = split.test_fraction + split.valid_fraction
        return np.where(draw < split.test_fraction, TEST, np.where(draw < valid_below, VALID, TRAIN))
    order = np.lexsort((np.arange(n), times, users))  # per user, by time (ties: log order)
    u = users[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    sizes = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, sizes)  # position within the user's history
    size = np.repeat(sizes, sizes)
    parts = np.full(n, TRAIN, dtype=np.int64)
    if split.method == "per_user_time":
        test_cut, valid_cut = _fraction_cuts(size, split)
        eligible = size >= split.min_interactions
    else:
        test_cut, valid_cut, eligible = _leave_one_out_cuts(u, pos, positive[order], starts, sizes, split)
    sorted_parts = np.where(pos >= test_cut, TEST, np.where(pos >= valid_cut, VALID, TRAIN))
    parts[order] = np.where(eligible, sorted_parts, TRAIN)
    return parts


def _fraction_cuts(size: np.ndarray, split: RecSplit) -> tuple[np.ndarray, np.ndarray]:
    """Per row (of its user): the first position in test and the first in valid; >= 1 row stays in train."""
    if split.last_n is not None:
        n_test = np.full(len(size), split.last_n)
        n_valid = np.full(len(size), split.last_n if split.valid_fraction > 0 else 0)
    else:
        n_test = np.maximum(1, np.round(size * split.test_fraction)).astype(np.int64)
        n_valid = np.round(size * split.valid_fraction).astype(np.int64)
        n_valid = np.where(split.valid_fraction > 0, np.maximum(1, n_valid), 0)
    n_test = np.minimum(n_test, size - 1)
    n_valid = np.minimum(n_valid, size - 1 - n_test)
    return size - n_test, size - n_test - n_valid


def _leave_one_out_cuts(
    users: np.ndarray, pos: np.ndarray, positive: np.ndarray, starts: np.ndarray, sizes: np.ndarray, split: RecSplit
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test from each user's last positive on, valid from the one before; users with too few positives stay whole."""
    n_users = len(starts)
    group = np.repeat(np.arange(n_users), sizes)
    pos_count = np.bincount(group, weights=positive.astype(np.float64), minlength=n_users).astype(np.int64)
    # rank of each positive counted from the user's end: 0 = last positive
    cum = np.cumsum(positive) - np.repeat(np.cumsum(positive)[starts] - positive[starts], sizes)
    from_end = np.repeat(pos_count, sizes) - cum
    last = np.full(n_users, np.iinfo(np.int64).max)
    before = np.full(n_users, np.iinfo(np.int64).max)
    hit = positive & (from_end == 0)
    last[group[hit]] = pos[hit]
    hit = positive & (from_end == 1)
    before[group[hit]] = pos[hit]
    if split.valid_fraction <= 0:
        before = last.copy()
    eligible = np.repeat(pos_count >= split.min_interactions, sizes)
    return np.repeat(last, sizes), np.repeat(before, sizes), eligible
