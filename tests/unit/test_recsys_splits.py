"""Evaluation protocols for interaction logs (data.split.method of a recommendation spec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.recsys import system
from pipeline.recsys.examples import FeedbackColumns, build_examples
from pipeline.recsys.splits import TEST, TRAIN, VALID, RecSplit, assign_parts
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamrec.yaml")
COLUMNS = FeedbackColumns("u", "i", "t", "y", True)


def log(n: int = 3000, users: int = 120, items: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "u": rng.integers(0, users, n),
            "i": rng.integers(0, items, n),
            "t": rng.permutation(n) * 10,  # distinct times
            "y": rng.random(n) < 0.5,
        }
    )


def _per_user(frame: pd.DataFrame, ex, part: str) -> pd.DataFrame:
    return frame.iloc[getattr(ex, part).rows]


def test_per_user_time_takes_each_users_last_fraction() -> None:
    frame = log()
    ex = build_examples(frame, np.arange(400), COLUMNS, split=RecSplit("per_user_time", 0.1, 0.2))
    assert ex.split == "per_user_time"
    train, valid, test = (_per_user(frame, ex, p) for p in ("train", "valid", "test"))
    assert len(train) + len(valid) + len(test) == len(frame)
    # per user: every train time < every valid time < every test time
    last_train = train.groupby("u")["t"].max()
    first_test = test.groupby("u")["t"].min()
    first_valid = valid.groupby("u")["t"].min()
    assert (first_test > last_train.reindex(first_test.index)).all()
    assert (first_valid > last_train.reindex(first_valid.index)).all()
    assert (first_test > valid.groupby("u")["t"].max().reindex(first_test.index).fillna(-1)).all()
    sizes = frame.groupby("u").size()
    share = test.groupby("u").size() / sizes.reindex(test.groupby("u").size().index)
    assert share.between(0.1, 0.35).all()
    # almost every user is evaluated (a global cut would leave the early-only users out)
    assert len(ex.test_users) > 0.9 * frame["u"].nunique() * 0.5


def test_per_user_time_last_n_and_min_interactions() -> None:
    frame = log()
    frame.loc[frame["u"] == 7, "u"] = 1000  # a user with ...
    frame = pd.concat([frame, pd.DataFrame({"u": [999, 999], "i": [1, 2], "t": [5, 6], "y": [True, True]})])
    ex = build_examples(frame, np.arange(400), COLUMNS, split=RecSplit("per_user_time", 0.1, 0.2, last_n=2))
    test = _per_user(frame, ex, "test")
    assert (test.groupby("u").size() == 2).all()
    assert 999 not in set(test["u"]) and 999 not in set(_per_user(frame, ex, "valid")["u"])  # 2 < min_interactions
    assert 999 in set(_per_user(frame, ex, "train")["u"])


def test_leave_one_out_holds_out_each_users_last_positive() -> None:
    frame = log()
    ex = build_examples(frame, np.arange(400), COLUMNS, split=RecSplit("leave_one_out", 0.1, 0.2))
    test = _per_user(frame, ex, "test")
    positives = frame[frame["y"]]
    last = positives.sort_values("t").groupby("u").tail(1)
    eligible = positives.groupby("u").size() >= 3
    expected = last[last["u"].isin(eligible[eligible].index)]
    held = test[test["y"]]
    assert sorted(held["t"]) == sorted(expected["t"])  # exactly one positive per eligible user
    assert (held.groupby("u").size() == 1).all()
    assert (_per_user(frame, ex, "valid")["y"].groupby(_per_user(frame, ex, "valid")["u"]).sum() == 1).all()


def test_random_split_is_seeded() -> None:
    frame = log()
    a = build_examples(frame, np.arange(400), COLUMNS, split=RecSplit("random", 0.1, 0.2, seed=3))
    b = build_examples(frame, np.arange(400), COLUMNS, split=RecSplit("random", 0.1, 0.2, seed=3))
    c = build_examples(frame, np.arange(400), COLUMNS, split=RecSplit("random", 0.1, 0.2, seed=4))
    assert np.array_equal(a.test.rows, b.test.rows) and not np.array_equal(a.test.rows, c.test.rows)
    assert 0.15 < len(a.test) / len(frame) < 0.25


def test_assign_parts_keeps_one_training_row() -> None:
    users = np.array([0, 0, 1, 1, 1])
    split = RecSplit("per_user_time", 0.3, 0.3, min_interactions=2)
    parts = assign_parts(users, np.arange(5), np.ones(5, bool), split)
    assert list(parts) == [TRAIN, TEST, TRAIN, VALID, TEST]


def test_bad_split_arguments() -> None:
    with pytest.raises(ValueError, match="unknown split method"):
        RecSplit("stratified")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_interactions"):
        RecSplit("leave_one_out", min_interactions=1)


def test_spec_split_methods_are_checked_per_task() -> None:
    spec = load_spec(SPEC, ["data.split.method=per_user_time", "data.split.last_n=3"]).spec
    assert system.rec_split(spec) == RecSplit("per_user_time", 0.1, 0.2, last_n=3, min_interactions=3, seed=11)
    assert system.rec_split(load_spec(SPEC, ["data.split.method=time"]).spec).method == "global_time"
    with pytest.raises(SpecError, match="does not fit task recommendation"):
        load_spec(SPEC, ["data.split.method=stratified"])
    with pytest.raises(SpecError, match="per_user_time"):
        load_spec(SPEC, ["data.split.method=leave_one_out", "data.split.last_n=2"])
    churn = str(REPO / "specs" / "streamflow_churn.yaml")
    if Path(churn).exists():
        with pytest.raises(SpecError, match="does not fit task binary_classification"):
            load_spec(churn, ["data.split.method=leave_one_out"])


def test_too_few_users_makes_every_metric_insufficient() -> None:
    frame = log()
    ex = build_examples(frame, np.arange(400), COLUMNS, split=RecSplit("leave_one_out"))
    spec = load_spec(SPEC, ["evaluation.min_users=100000"]).spec
    info = system.evaluated_users(spec, ex)
    assert info["users"] == len(ex.test_users) and info["cold_users"] == 0 and not info["sufficient"]
    why = system.too_few_users(spec, ex, {"ndcg@10": 0.2, "hit@10": 0.3})
    assert set(why) == {"ndcg@10", "hit@10"} and "evaluation.min_users" in why["ndcg@10"]
    assert system.too_few_users(load_spec(SPEC, ["evaluation.min_users=1"]).spec, ex, {"ndcg@10": 0.2}) == {}
