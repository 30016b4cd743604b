"""Train/valid/test splits: no future leakage, ties kept together, sizes follow the fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.split import split_frame
from pipeline.spec.schema import SplitSpec


def frame(n: int, distinct: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, distinct, size=n), unit="h")
    return pd.DataFrame({"id": np.arange(n), "ts": times, "x": rng.normal(size=n)})


def test_time_split_has_no_future_leakage_and_right_sizes() -> None:
    df = frame(20_000, 5_000)
    parts = split_frame(df, SplitSpec(method="time", valid_fraction=0.1, test_fraction=0.2), "ts", seed=0)
    train, valid, test = parts["train"], parts["valid"], parts["test"]
    assert train["ts"].max() < valid["ts"].min() and valid["ts"].max() < test["ts"].min()
    assert len(train) + len(valid) + len(test) == len(df)
    assert set(train["id"]) | set(valid["id"]) | set(test["id"]) == set(df["id"])
    for part, fraction in ((train, 0.7), (valid, 0.1), (test, 0.2)):
        assert abs(len(part) / len(df) - fraction) < 0.01


def test_equal_timestamps_never_straddle_a_cut() -> None:
    df = frame(1_000, 7)  # few distinct timestamps: cuts must snap to boundaries
    parts = split_frame(df, SplitSpec(method="time", valid_fraction=0.15, test_fraction=0.3), "ts", seed=0)
    seen = [set(parts[name]["ts"]) for name in ("train", "valid", "test")]
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    assert len(parts["train"]) > 0 and len(parts["test"]) > 0


def test_time_split_needs_a_timestamp() -> None:
    with pytest.raises(ValueError, match="needs a timestamp column"):
        split_frame(frame(10, 10), SplitSpec(method="time"), None, seed=0)
    with pytest.raises(ValueError, match="'nope'"):
        split_frame(frame(10, 10), SplitSpec(method="time"), "nope", seed=0)


def test_time_split_with_a_single_timestamp_is_an_error() -> None:
    with pytest.raises(ValueError, match="single distinct value"):
        split_frame(frame(100, 1), SplitSpec(method="time"), "ts", seed=0)


def test_time_split_rejects_missing_timestamps() -> None:
    df = frame(10, 10)
    df.loc[3, "ts"] = pd.NaT
    with pytest.raises(ValueError, match="1 missing"):
        split_frame(df, SplitSpec(method="time"), "ts", seed=0)


def test_random_split_is_seeded_disjoint_and_sized() -> None:
    df = frame(10_000, 100)
    spec = SplitSpec(method="random", valid_fraction=0.1, test_fraction=0.2)
    a, b, c = (split_frame(df, spec, None, seed=s) for s in (1, 1, 2))
    assert all(a[k]["id"].equals(b[k]["id"]) for k in a)
    assert not a["test"]["id"].equals(c["test"]["id"])
    ids = [set(a[k]["id"]) for k in ("train", "valid", "test")]
    assert sum(map(len, ids)) == len(df) and set.union(*ids) == set(df["id"])
    for name, fraction in (("train", 0.7), ("valid", 0.1), ("test", 0.2)):
        assert abs(len(a[name]) / len(df) - fraction) < 0.01
    assert a["train"]["id"].is_monotonic_increasing  # input order kept within a part
