"""Recommendation examples: leakage-free time split, id maps, quarantine, relevant sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.synthetic import streamrec
from pipeline.recsys.examples import FeedbackColumns, IdMap, build_examples
from pipeline.spec.schema import ScenarioSpec

COLUMNS = FeedbackColumns("user_id", "item_id", "timestamp", label="clicked", positive=1)


@pytest.fixture(scope="module")
def synthetic() -> dict[str, pd.DataFrame]:
    return streamrec.generate(20_000, 11, ScenarioSpec())


def _log(rows: list[tuple[object, object, object, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "clicked"])


def test_time_split_has_no_leakage(synthetic: dict[str, pd.DataFrame]) -> None:
    ex = build_examples(synthetic["interactions"], synthetic["items"]["item_id"], COLUMNS, 0.1, 0.2)
    assert ex.train.times.max() < ex.valid.times.min() <= ex.valid.times.max() < ex.test.times.min()
    assert ex.valid_start == pd.Timestamp(int(ex.valid.times.min()))
    assert ex.test_start == pd.Timestamp(int(ex.test.times.min()))
    counts = ex.counts()
    assert counts["train"] + counts["valid"] + counts["test"] + counts["quarantined"] == counts["input"]
    assert abs(counts["test"] - 0.2 * counts["input"]) <= 0.01 * counts["input"]
    # the id maps cover the whole catalogue and every logged user
    assert ex.n_items == len(synthetic["items"])
    assert ex.n_users == synthetic["interactions"]["user_id"].nunique()


def test_relevant_items_exclude_train_history(synthetic: dict[str, pd.DataFrame]) -> None:
    ex = build_examples(synthetic["interactions"], synthetic["items"]["item_id"], COLUMNS, 0.1, 0.2)
    assert ex.test_relevant.multiply(ex.seen).nnz == 0
    assert ex.valid_relevant.multiply(ex.seen).nnz == 0
    # every relevant pair is a positive test interaction
    test = ex.test
    pairs = set(zip(test.users[test.positive].tolist(), test.items[test.positive].tolist(), strict=True))
    rows, cols = ex.test_relevant.nonzero()
    assert set(zip(rows.tolist(), cols.tolist(), strict=True)) <= pairs
    # warm users have a train history, cold ones none; both have something relevant
    history = np.diff(ex.seen.indptr) > 0
    assert history[ex.test_users].all() and not history[ex.cold_test_users].any()
    assert (np.diff(ex.test_relevant.indptr)[np.concatenate([ex.test_users, ex.cold_test_users])] > 0).all()
    assert np.intersect1d(ex.test_users, ex.cold_test_users).size == 0


def test_repeat_positive_of_a_seen_item_is_not_relevant() -> None:
    log = _log([("a", 1, 1, 1), ("a", 2, 2, 0), ("b", 1, 3, 1), ("a", 1, 10, 1), ("a", 2, 11, 1), ("b", 3, 12, 1)])
    ex = build_examples(log, [1, 2, 3], COLUMNS, 0.0, 0.5)
    a, b = ex.user_map.index(np.array(["a", "b"]))
    item = dict(zip([1, 2, 3], ex.item_map.index(np.array([1, 2, 3])), strict=True))
    # a clicked 1 in train, so 1 is not relevant again; 2 was only shown in train, so it is
    assert ex.test_relevant[a].indices.tolist() == [item[2]]
    assert ex.test_relevant[b].indices.tolist() == [item[3]]
    strict = build_examples(log, [1, 2, 3], COLUMNS, 0.0, 0.5, seen_from="any")
    assert strict.test_relevant[a].nnz == 0
    assert set(strict.test_users.tolist()) == {b}


def test_unknown_and_incomplete_rows_are_quarantined_with_reasons() -> None:
    log = _log(
        [
            ("a", 1, 1, 1),
            ("a", 99, 2, 1),
            (None, 1, 3, 1),
            ("b", 2, None, 1),
            ("b", 2, 4, 1),
            ("c", None, 5, 0),
            ("b", 3, 6, 1),
        ]
    )
    ex = build_examples(log, pd.Series([1, 2, 3]), COLUMNS, 0.0, 0.3)
    reasons = dict(zip(ex.quarantine.index.tolist(), ex.quarantine["reason"].tolist(), strict=True))
    assert reasons == {1: "unknown item", 2: "missing user", 3: "missing or invalid timestamp", 5: "missing item"}
    assert ex.counts()["quarantined"] == 4
    assert len(ex.train) + len(ex.valid) + len(ex.test) + len(ex.quarantine) == len(log)
    # users only present in quarantined rows get no index
    assert sorted(ex.user_map.ids.tolist()) == ["a", "b"]


def test_user_table_fixes_indices_and_quarantines_unknown_users() -> None:
    log = _log([("a", 1, 1, 1), ("z", 1, 2, 1), ("b", 2, 3, 1), ("a", 2, 4, 1)])
    ex = build_examples(log, [2, 1], COLUMNS, 0.0, 0.25, user_ids=["b", "a"])
    assert ex.quarantine["reason"].tolist() == ["unknown user"]
    assert ex.user_map.index(np.array(["b", "a", "q"])).tolist() == [0, 1, -1]
    # item indices follow the item table's order, not the sorted ids
    assert ex.item_map.index(np.array([2, 1])).tolist() == [0, 1]


def test_rows_sharing_the_cut_off_time_stay_together() -> None:
    log = _log([("a", 1, 1, 1), ("a", 2, 2, 1), ("b", 1, 2, 1), ("b", 2, 2, 1), ("c", 3, 3, 1)])
    ex = build_examples(log, [1, 2, 3], COLUMNS, 0.0, 0.5)
    assert len(ex.test) == 4 and len(ex.train) == 1
    assert ex.train.times.max() < ex.test.times.min()


def test_explicit_ratings_become_implicit_feedback_by_threshold() -> None:
    log = pd.DataFrame(
        {"u": [1, 1, 2, 2], "i": ["x", "y", "x", "y"], "t": [1.0, 2.0, 3.0, 4.0], "stars": [5, 2, 4, None]}
    )
    cols = FeedbackColumns("u", "i", "t", label="stars", rating_threshold=4)
    ex = build_examples(log, ["x", "y"], cols, 0.0, 0.25)
    assert ex.quarantine["reason"].tolist() == ["missing label"]
    assert ex.train.positive.tolist() == [True, False] and ex.test.positive.tolist() == [True]
    assert ex.test_start == 3.0  # cut-offs are placed on the accepted rows
    assert ex.train_positives.sum() == 1
    no_test = build_examples(log, ["x", "y"], cols, 0.0, 0.0)
    assert no_test.test_start is None and len(no_test.test) == 0


def test_log_without_label_treats_every_row_as_positive_and_keeps_counts() -> None:
    log = pd.DataFrame(
        {
            "u": [1, 1, 1, 2],
            "i": [7, 7, 8, 7],
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-02-01"]),
        }
    )
    ex = build_examples(log, [7, 8, 9], FeedbackColumns("u", "i", "t"), 0.0, 0.25)
    assert ex.train_positives.toarray().tolist() == [[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert ex.seen.toarray().tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert ex.cold_test_users.tolist() == [1] and ex.test_users.size == 0
    assert ex.test_start == pd.Timestamp("2024-02-01")


def test_bad_arguments_are_refused() -> None:
    log = _log([("a", 1, 1, 1)])
    with pytest.raises(ValueError, match="lack column"):
        build_examples(log.drop(columns="clicked"), [1], COLUMNS)
    with pytest.raises(ValueError, match="sum < 1"):
        build_examples(log, [1], COLUMNS, 0.5, 0.5)
    with pytest.raises(ValueError, match="unique"):
        IdMap(np.array([1, 1, 2]))
    with pytest.raises(ValueError, match="all 1 rows were quarantined"):
        build_examples(log, [2], COLUMNS)
    with pytest.raises(ValueError, match="before the validation cut-off"):
        build_examples(_log([("a", 1, 5, 1), ("b", 1, 5, 1)]), [1], COLUMNS, 0.0, 0.5)


def test_text_timestamps_in_mixed_formats_and_zones_are_read_as_utc() -> None:
    log = _log([("a", 1, "2024-01-01 00:00", 1), ("b", 1, "2024-01-02", 1), ("a", 2, "2024-01-03T00:00+01:00", 1)])
    ex = build_examples(log, [1, 2], COLUMNS, 0.0, 0.34)
    assert ex.quarantine.empty
    assert ex.test_start == pd.Timestamp("2024-01-02 23:00")
