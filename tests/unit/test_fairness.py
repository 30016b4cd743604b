"""Fairness metrics: planted disparities are found, fair models pass, small groups are reported, not gated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from pipeline.fairness import classification_fairness, recommendation_fairness, stage_metric
from pipeline.fairness.bootstrap import replicate_sums
from pipeline.fairness.chart import write_chart
from pipeline.fairness.classification import _auc
from pipeline.fairness.recommendation import gini
from pipeline.fairness.result import INSUFFICIENT
from pipeline.fairness.sections import Sections, render_markdown
from pipeline.gates.evaluate import evaluate_gates
from pipeline.gates.evaluate import render_markdown as render_gates
from pipeline.spec.catalog import metric_info
from pipeline.spec.schema import GateSpec


def scored(n: int, seed: int, miss_b: float, groups=("a", "b", "c"), shares=(0.45, 0.35, 0.2)):
    """Labels, scores and groups; `miss_b` pulls group b's positives towards the negatives (a planted TPR gap)."""
    rng = np.random.default_rng(seed)
    g = rng.choice(list(groups), size=n, p=list(shares))
    y = (rng.random(n) < 0.25).astype(float)
    p = np.clip(0.25 + 0.35 * y - miss_b * y * (g == "b") + rng.normal(0, 0.15, n), 0, 1)
    return y, p, pd.DataFrame({"g": g, "h": rng.choice(["x", "y"], size=n)})


def test_planted_disparity_is_detected_and_a_fair_model_passes() -> None:
    y, p, frame = scored(8000, 1, miss_b=0.25)
    unfair = classification_fairness(y, p, frame, [["g"]], 0.4, replicates=300)
    low, _ = unfair.intervals["tpr_gap[g]"]
    assert unfair.metrics["tpr_gap[g]"] > 0.3 and low > 0.1  # found, and not by chance
    assert unfair.metrics["tpr_gap"] == unfair.metrics["tpr_gap[g]"]  # the worst grouping
    assert unfair.metrics["equalized_odds_gap"] >= unfair.metrics["tpr_gap"]

    y, p, frame = scored(8000, 2, miss_b=0.0)
    fair = classification_fairness(y, p, frame, [["g"], ["g", "h"]], 0.4, replicates=300)
    assert fair.metrics["tpr_gap[g]"] < 0.06
    gates = {"tpr_gap_g": GateSpec(metric="tpr_gap[g]", max=0.10)}
    assert evaluate_gates(gates, fair.metrics, "binary_classification").passed
    assert not evaluate_gates(gates, unfair.metrics, "binary_classification").passed


def test_group_values_match_direct_computation() -> None:
    y, p, frame = scored(3000, 3, miss_b=0.1)
    report = classification_fairness(y, p, frame, [["g"]], 0.4, replicates=50)
    rows = {(r.group, r.metric): r for r in report.groups}
    b = frame["g"].to_numpy() == "b"
    flagged = p >= 0.4
    assert rows["b", "auc"].value == pytest.approx(roc_auc_score(y[b], p[b]))
    assert rows["b", "tpr"].value == pytest.approx(flagged[b & (y == 1)].mean())
    assert rows["b", "tpr"].n == int((b & (y == 1)).sum())  # a rate's sample size is its denominator
    assert rows["b", "fpr"].value == pytest.approx(flagged[b & (y == 0)].mean())
    assert rows["b", "precision"].value == pytest.approx(y[b & flagged].mean())
    assert rows["b", "flagged_share"].value == pytest.approx(flagged[b].mean())
    for r in report.groups:
        assert r.low <= r.high


def test_weighted_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(500) < 0.3).astype(float)
    p = np.round(rng.random(500) * 0.5 + 0.3 * y, 1)  # heavy ties
    assert _auc(np.ones((1, 500)), y, p)[0] == pytest.approx(roc_auc_score(y, p))
    counts = rng.integers(0, 3, size=(1, 500)).astype(float)
    assert _auc(counts, y, p)[0] == pytest.approx(roc_auc_score(y, p, sample_weight=counts[0]))


def test_tiny_group_is_reported_insufficient_never_dropped_nor_gated() -> None:
    y, p, frame = scored(6000, 5, miss_b=0.0, groups=("a", "b", "tiny"), shares=(0.6, 0.39, 0.01))
    p = np.where(frame["g"] == "tiny", 1 - p, p)  # the tiny group is badly served: noise at its size
    report = classification_fairness(y, p, frame, [["g"]], 0.4, min_group_size=200, replicates=100)
    tiny = [r for r in report.groups if r.group == "tiny"]
    assert {r.metric for r in tiny} == {"auc", "tpr", "fpr", "precision", "flagged_share"}
    assert all(r.status == INSUFFICIENT and r.low is None for r in tiny)
    assert tiny[0].n == int((frame["g"] == "tiny").sum())
    assert report.metrics["auc_gap[g]"] < 0.05  # a vs b only: the tiny group's AUC does not enter the gap

    only_tiny = classification_fairness(y, p, frame, [["g"]], 0.4, min_group_size=5000, replicates=0)
    assert only_tiny.metrics["tpr_gap[g]"] is None
    assert only_tiny.insufficient["tpr_gap[g]"].startswith(INSUFFICIENT)
    gates = {"tpr": GateSpec(metric="tpr_gap[g]", max=0.1), "fail_on_it": GateSpec(metric="tpr_gap", max=0.1)}
    gates["fail_on_it"].on_insufficient = "fail"
    result = evaluate_gates(gates, only_tiny.metrics, "binary_classification", insufficient=only_tiny.insufficient)
    soft, hard = result.results
    assert soft.insufficient and not soft.blocking and "insufficient data" in soft.reason
    assert hard.insufficient and hard.blocking and not result.passed  # declared: it blocks
    assert "| insufficient data |" in render_gates(result, "t")
    del gates["fail_on_it"]
    assert evaluate_gates(gates, only_tiny.metrics, "binary_classification", insufficient=only_tiny.insufficient).passed


def test_intersections_and_missing_values_are_groups() -> None:
    frame = pd.DataFrame({"a": ["x", "x", None, "y"] * 100, "b": ["1", "2", "1", "2"] * 100})
    y = np.tile([0.0, 1.0, 1.0, 0.0], 100)
    report = classification_fairness(y, np.full(400, 0.5), frame, [["a", "b"]], 0.5, min_group_size=10, replicates=0)
    assert {r.group for r in report.groups} == {"x/1", "x/2", "(missing)/1", "y/2"}
    assert {r.grouping for r in report.groups} == {"a*b"}


def test_bootstrap_is_seeded_and_vectorised() -> None:
    values = np.arange(10.0)[:, None]
    first = replicate_sums(values, 200, np.random.default_rng(0))
    assert first.shape == (200, 1) and np.allclose(first, replicate_sums(values, 200, np.random.default_rng(0)))
    assert first.mean() == pytest.approx(45.0, rel=0.05)


def test_recommendation_exposure_equity_gini_and_user_disparity() -> None:
    items = pd.DataFrame({"language": ["en"] * 6 + ["hi"] * 4})  # catalogue shares 0.6 / 0.4
    n_users = 400
    lists = np.tile(np.array([0, 1, 2, 6, 3]), (n_users, 1))  # 'hi' only at slot 4 of 5
    users = pd.DataFrame({"segment": ["new"] * 100 + ["old"] * 300})
    relevant = sp.lil_matrix((n_users, 10))
    for u in range(n_users):
        relevant[u, 0 if u >= 100 else 9] = 1  # old users' relevant item is listed first, new users' never
    report = recommendation_fairness(
        lists, relevant.tocsr(), users, items, [["segment"]], [["language"]], k=5, min_group_size=50, min_group_items=2
    )
    w = 1 / np.log2(np.arange(5) + 2)
    hi_share = w[3] / w.sum()
    assert report.metrics["exposure_equity[language]"] == pytest.approx(hi_share / 0.4)
    assert report.metrics["exposure_equity"] == report.metrics["exposure_equity[language]"]
    assert report.metrics["hit_disparity@5[segment]"] == pytest.approx(1.0)
    assert report.metrics["ndcg_disparity@5"] == pytest.approx(1.0)
    assert 0 < report.metrics["exposure_gini"] < 1
    assert gini(np.ones(8))[0] == pytest.approx(0.0) and gini(np.r_[np.zeros(9), 1.0])[0] == pytest.approx(0.9)


def test_small_creator_group_is_insufficient() -> None:
    items = pd.DataFrame({"language": ["en"] * 40 + ["hi"] * 3})
    lists = np.tile(np.arange(10), (300, 1))
    relevant = sp.csr_matrix((np.ones(300), (np.arange(300), np.zeros(300, dtype=int))), shape=(300, 43))
    report = recommendation_fairness(
        lists, relevant, pd.DataFrame(index=range(300)), items, [], [["language"]], k=10, min_group_items=20
    )
    hi = [r for r in report.groups if r.group == "hi"]
    assert hi and all(r.status == INSUFFICIENT for r in hi)
    # only 'en' counts: every slot is an 'en' item, so its ratio is 1 / (40/43); 'hi' (3 items) is not judged
    assert report.metrics["exposure_equity[language]"] == pytest.approx(43 / 40)


def test_stage_metric_on_logged_rows() -> None:
    y, p, frame = scored(4000, 6, miss_b=0.3)
    rows = pd.DataFrame({"group": frame["g"], "outcome": y, "prediction": p})
    gap = stage_metric("tpr_gap", rows, threshold=0.4)
    assert gap["status"] == "ok" and gap["value"] > 0.3
    small = stage_metric("tpr_gap[g]", rows.head(300), threshold=0.4)
    assert small["value"] is None and small["status"] == INSUFFICIENT
    hits = pd.DataFrame({"group": ["a"] * 300 + ["b"] * 300, "outcome": [1] * 150 + [0] * 150 + [1] * 60 + [0] * 240})
    assert stage_metric("hit_disparity@10", hits)["value"] == pytest.approx(0.3)
    slots = pd.DataFrame({"group": ["en"] * 900 + ["hi"] * 100, "position": np.tile(np.arange(10), 100)})
    equity = stage_metric("exposure_equity", slots, reference={"en": 0.6, "hi": 0.4}, min_group_size=50)
    assert equity["value"] == pytest.approx(0.1 / 0.4, rel=0.2)
    with pytest.raises(ValueError, match="unknown stage fairness metric"):
        stage_metric("auc", rows)


def test_metric_names_are_in_the_catalogue() -> None:
    for name, task in [
        ("tpr_gap[age_band]", "binary_classification"),
        ("equalized_odds_gap[plan_type*age_band]", "binary_classification"),
        ("exposure_equity[is_new_creator*language]", "recommendation"),
        ("hit_disparity@10[age_band]", "recommendation"),
        ("ate_dr_low", "recommendation"),
        ("ab_p_value", "binary_classification"),
    ]:
        assert metric_info(name, task) is not None, name
    assert metric_info("auc[age_band]", "binary_classification") is None  # only group metrics have groupings
    assert metric_info("exposure_equity[language]", "recommendation").higher_is_better
    assert not metric_info("tpr_gap[age_band]", "binary_classification").higher_is_better


def test_chart_and_markdown(tmp_path) -> None:
    y, p, frame = scored(2000, 7, miss_b=0.2)
    report = classification_fairness(y, p, frame, [["g"]], 0.4, min_group_size=500, replicates=50)
    path = write_chart(tmp_path / "f.png", report, [{"estimator": "dr", "value": 0.04, "low": 0.03, "high": 0.05}])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = render_markdown(Sections(fairness=report, chart=str(path)))
    assert "## Fairness and causal evaluation" in text and "f.png" not in text  # the report links its own name
    assert "insufficient data" in text  # group c has < 500 rows


def test_fairness_metrics_gate_against_champion_and_baseline_in_their_direction() -> None:
    tpr = {"tpr_vs_champion": GateSpec(metric="tpr_gap[age_band]", vs="champion", max_drop=0.02)}
    champion = {"tpr_gap[age_band]": 0.05}
    task = "binary_classification"
    assert not evaluate_gates(tpr, {"tpr_gap[age_band]": 0.10}, task, champion).passed  # the gap widened
    assert evaluate_gates(tpr, {"tpr_gap[age_band]": 0.03}, task, champion).passed
    equity = {"equity": GateSpec(metric="exposure_equity[language]", vs="baseline", max_relative_drop=0.05)}
    baseline = {"exposure_equity[language]": 0.80}
    assert not evaluate_gates(equity, {"exposure_equity[language]": 0.70}, "recommendation", None, baseline).passed
    assert evaluate_gates(equity, {"exposure_equity[language]": 0.85}, "recommendation", None, baseline).passed
