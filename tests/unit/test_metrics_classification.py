"""Classification metrics against hand-computed values, and their behaviour on degenerate input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.metrics import CLASSIFICATION_METRICS, calibration_table, classification_metrics, lift_by_decile
from pipeline.spec.catalog import metric_info

Y = np.array([1, 0, 1, 0])
P = np.array([0.9, 0.4, 0.35, 0.1])


def test_metric_names_are_the_catalogues():
    assert set(classification_metrics(Y, P, 0.3, 2)) == set(CLASSIFICATION_METRICS)
    for name in CLASSIFICATION_METRICS:
        assert metric_info(name, "binary_classification") is not None, name


def test_tiny_example_matches_hand_computation():
    m = classification_metrics(Y, P, threshold=0.3, k=2)
    assert m["auc"] == pytest.approx(3 / 4)  # 3 of 4 positive/negative pairs ordered correctly
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # recall steps at ranks 1 and 3
    assert m["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.9)) / 4)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.01) / 4)
    # flagged at 0.3: rows 0, 1, 2 -> TP 2, FP 1, FN 0, TN 1
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)
    assert m["precision_at_k"] == pytest.approx(1 / 2)  # top 2: 0.9 (positive), 0.4 (negative)
    assert m["flagged_share"] == pytest.approx(3 / 4)


def test_one_class_gives_nan_rank_metrics_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for y in (np.zeros(4), np.ones(4)):
            m = classification_metrics(y, P, threshold=0.3, k=2)
            assert math.isnan(m["auc"]) and math.isnan(m["pr_auc"])
            assert all(math.isfinite(m[k]) for k in CLASSIFICATION_METRICS if k not in ("auc", "pr_auc"))
    m = classification_metrics(np.zeros(4), P, threshold=0.3, k=2)
    assert m["recall"] == 0.0 and m["precision"] == 0.0 and m["f1"] == 0.0


def test_nothing_flagged_and_oversized_k_and_empty_input():
    m = classification_metrics(Y, P, threshold=0.95, k=100)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["flagged_share"] == 0.0
    assert m["precision_at_k"] == pytest.approx(0.5)  # k capped at n
    assert all(math.isnan(v) for v in classification_metrics(np.array([]), np.array([]), 0.5, 10).values())


def test_log_loss_stays_finite_for_confident_mistakes():
    m = classification_metrics(np.array([1, 0]), np.array([0.0, 1.0]), 0.5, 1)
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 30


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        (np.array([0, 2]), np.array([0.1, 0.2]), "0/1"),
        (np.array([0, 1]), np.array([0.1, 1.2]), "probabilities"),
        (np.array([0, 1]), np.array([0.1, np.nan]), "probabilities"),
        (np.array([0, 1, 1]), np.array([0.1, 0.2]), "one length"),
    ],
)
def test_bad_input_is_refused(y, p, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y, p, 0.5, 1)


def test_calibration_table():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.12, 0.95, 1.0])
    table = calibration_table(y, p, bins=10)
    assert [row["bin"] for row in table] == [1, 2, 10]  # empty bins left out; p == 1 in the last bin
    assert table[1] == {
        "bin": 2,
        "lower": 0.1,
        "upper": 0.2,
        "mean_predicted": pytest.approx(0.135),
        "observed_rate": 0.5,
        "count": 2,
    }
    assert table[2]["count"] == 2 and table[2]["observed_rate"] == 1.0
    assert sum(row["count"] for row in table) == len(y)
    with pytest.raises(ValueError, match="bins"):
        calibration_table(y, p, bins=0)


def test_lift_by_decile():
    p = np.linspace(0.99, 0.0, 20)  # descending: rows 0-1 form decile 1
    y = np.zeros(20, dtype=int)
    y[[0, 1, 2, 19]] = 1
    table = lift_by_decile(y, p)
    assert [row["decile"] for row in table] == list(range(1, 11))
    first, second, last = table[0], table[1], table[-1]
    assert (first["count"], first["positives"], first["rate"]) == (2, 2, 1.0)
    assert first["lift"] == pytest.approx(1.0 / 0.2)
    assert first["cumulative_capture"] == pytest.approx(0.5)
    assert second["positives"] == 1 and second["cumulative_capture"] == pytest.approx(0.75)
    assert last["cumulative_capture"] == pytest.approx(1.0)
    assert first["min_score"] >= second["max_score"]


def test_lift_without_positives_or_with_few_rows():
    table = lift_by_decile(np.zeros(5), np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert len(table) == 5  # fewer than 10 rows: empty deciles left out
    assert all(math.isnan(row["lift"]) and math.isnan(row["cumulative_capture"]) for row in table)
