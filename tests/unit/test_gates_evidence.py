"""Gates that know their evidence (issues 18.3 and 15.14): intervals, sample sizes, decide_on,
`source: cv`, and fairness gates that cannot hide the groups they left out.

docs/adr/0027-gates-that-know-their-evidence.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline.fairness import classification_fairness, recommendation_fairness
from pipeline.fairness.sections import Sections
from pipeline.gates.evaluate import Evidence, evaluate_gates
from pipeline.gates.intervals import classification_evidence, cv_evidence
from pipeline.gates.report import render_gates
from pipeline.spec.schema import EvaluationSpec, GateSpec

TASK = "binary_classification"


def gates(**specs: dict) -> dict[str, GateSpec]:
    return {name: GateSpec(**spec) for name, spec in specs.items()}


# ---------------------------------------------------------------- 18.3: intervals, decide_on, minimum evidence


def test_performance_gate_decides_on_point_by_default_and_shows_its_interval() -> None:
    evidence = {"auc": Evidence(low=0.76, high=0.84, rows=368, positives=40, method="bootstrap")}
    [result] = evaluate_gates(gates(auc={"min": 0.78}), {"auc": 0.80}, TASK, evidence=evidence).results
    assert result.passed and result.decided_on == "point"  # today's behaviour for existing specs
    assert (result.low, result.high, result.rows, result.positives) == (0.76, 0.84, 368, 40)
    assert "[0.76, 0.84]" in result.reason


def test_decide_on_the_cautious_bound_fails_a_point_pass() -> None:
    evidence = {"auc": Evidence(low=0.76, high=0.84), "brier": Evidence(low=0.15, high=0.22)}
    spec = gates(auc={"min": 0.78, "decide_on": "lower_bound"}, brier={"max": 0.20, "decide_on": "upper_bound"})
    report = evaluate_gates(spec, {"auc": 0.80, "brier": 0.18}, TASK, evidence=evidence)
    auc, brier = report.results
    assert not auc.passed and auc.decided_on == "lower_bound"
    assert "lower bound 0.76 is below min 0.78" in auc.reason and auc.rule == "min 0.78 (lower bound)"
    assert not brier.passed and "upper bound 0.22 is above max 0.2" in brier.reason
    assert evaluate_gates(
        gates(auc={"min": 0.75, "decide_on": "lower_bound"}), {"auc": 0.8}, TASK, evidence=evidence
    ).passed


def test_explicit_decide_on_without_an_interval_is_insufficient_not_a_point_decision() -> None:
    spec = gates(auc={"min": 0.5, "decide_on": "lower_bound"})
    [result] = evaluate_gates(spec, {"auc": 0.9}, TASK, evidence={"auc": Evidence(rows=100)}).results
    assert result.insufficient and not result.passed and "no interval" in result.reason
    [result] = evaluate_gates(spec, {"auc": 0.9}, TASK).results  # no evidence at all: the same
    assert result.insufficient and not result.passed


def test_decide_on_a_bound_of_a_relative_gate_is_an_invalid_rule() -> None:
    spec = gates(g={"metric": "auc", "vs": "champion", "max_drop": 0.01, "decide_on": "lower_bound"})
    [result] = evaluate_gates(spec, {"auc": 0.9}, TASK, champion={"auc": 0.8}).results
    assert result.rule == "invalid rule" and not result.passed


def test_below_min_positives_is_insufficient_and_says_what_would_help() -> None:
    evidence = {"auc": Evidence(low=0.70, high=0.95, rows=368, positives=12)}
    soft = gates(auc={"min": 0.75, "min_positives": 30})
    [result] = evaluate_gates(soft, {"auc": 0.86}, TASK, evidence=evidence).results
    assert result.insufficient and not result.passed and not result.blocking  # on_insufficient: report
    assert "12 positives < min_positives 30" in result.reason
    assert "test_fraction" in result.suggestion and "source: cv" in result.suggestion
    hard = gates(auc={"min": 0.75, "min_positives": 30, "on_insufficient": "fail"})
    assert not evaluate_gates(hard, {"auc": 0.86}, TASK, evidence=evidence).passed
    # the evaluation's minimum applies to every gate without its own
    evaluation = EvaluationSpec(min_rows=500)
    spec = gates(auc={"min": 0.75, "on_insufficient": "fail"})
    [result] = evaluate_gates(spec, {"auc": 0.86}, TASK, evidence=evidence, evaluation=evaluation).results
    assert result.insufficient and result.blocking and "368 rows < min_rows 500" in result.reason
    assert evaluate_gates(spec, {"auc": 0.86}, TASK, evidence=evidence, evaluation=EvaluationSpec()).passed
    text = render_gates(evaluate_gates(soft, {"auc": 0.86}, TASK, evidence=evidence), "t")
    assert "| auc | 0.8600 [0.7000, 0.9500] | insufficient evidence |" in text
    assert "- auc: enough evidence would need a larger data.split.test_fraction" in text
    assert max(map(len, text.splitlines())) <= 200


def test_source_cv_reads_the_folds_mean_and_interval() -> None:
    selection = [
        {"metric": "auc", "selected": False, "folds": [0.7, 0.71, 0.69], "metrics": {"auc": 0.7}},
        {"metric": "auc", "selected": True, "folds": [0.80, 0.82, 0.78], "metrics": {"auc": 0.80, "brier": 0.12}},
    ]
    cv = cv_evidence(selection, train_rows=13000)
    assert cv["auc"].value == pytest.approx(0.80) and cv["auc"].low == pytest.approx(0.80 - 4.303 * 0.02 / 3**0.5, 1e-3)
    assert cv["brier"].value == pytest.approx(0.12) and cv["brier"].low is None  # only the mean over the folds
    spec = gates(auc_cv={"metric": "auc", "min": 0.79, "source": "cv"}, auc={"min": 0.79})
    cautious = gates(auc_cv={"metric": "auc", "min": 0.79, "source": "cv", "decide_on": "lower_bound"})
    test_slice = {"auc": 0.76}  # a noisy test slice
    report = evaluate_gates(spec, test_slice, TASK, cv=cv)
    assert [r.passed for r in report.results] == [True, False]
    assert report.results[0].value == pytest.approx(0.80) and report.results[0].source == "cv"
    assert not evaluate_gates(cautious, test_slice, TASK, cv=cv).passed  # 0.80 +- 0.05 reaches below 0.79
    [missing] = evaluate_gates(spec, test_slice, TASK).results[:1]  # no cross-validation in this run
    assert missing.insufficient and "selection.cv_folds" in missing.suggestion


def test_classification_evidence_is_seeded_and_brackets_the_point() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(float)
    p = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.2, 600), 0, 1)
    first = classification_evidence(y, p, 0.4, 50, replicates=100, seed=3)
    again = classification_evidence(y, p, 0.4, 50, replicates=100, seed=3)
    assert first == again and first["auc"].rows == 600 and first["auc"].positives == int(y.sum())
    from pipeline.metrics import classification_metrics

    point = classification_metrics(y, p, 0.4, 50)
    for name in ("auc", "pr_auc", "brier", "precision", "recall", "precision_at_k"):
        assert first[name].low <= point[name] <= first[name].high, name
    assert classification_evidence(y, p, 0.4, 50, replicates=0)["auc"].low is None


# ---------------------------------------------------------------- 15.14: fairness gates cannot hide the worst-off


def test_fairness_gap_decides_on_its_upper_bound_by_default() -> None:
    """The demo's finding: tpr_gap_age_band 0.051 passed on its point while [0.030, 0.179] crossed 0.15."""
    metrics = {"tpr_gap[age_band]": 0.051}
    evidence = {"tpr_gap[age_band]": Evidence(low=0.030, high=0.179)}
    default = gates(tpr_gap_age_band={"metric": "tpr_gap[age_band]", "max": 0.15})
    [result] = evaluate_gates(default, metrics, TASK, evidence=evidence).results
    assert not result.passed and result.decided_on == "upper_bound"
    assert "upper bound 0.179 is above max 0.15" in result.reason
    point = gates(tpr_gap_age_band={"metric": "tpr_gap[age_band]", "max": 0.15, "decide_on": "point"})
    assert evaluate_gates(point, metrics, TASK, evidence=evidence).passed  # the spec can choose the old rule
    equity = gates(e={"metric": "exposure_equity[language]", "min": 0.6})  # a min: the lower bound
    ev = {"exposure_equity[language]": Evidence(low=0.55, high=0.9)}
    assert not evaluate_gates(equity, {"exposure_equity[language]": 0.7}, "recommendation", evidence=ev).passed
    # no interval (bootstrap: 0): the default falls back to the point estimate and says so
    [result] = evaluate_gates(default, metrics, TASK, evidence={}).results
    assert result.passed and "no interval" in result.reason


def scored(n: int, seed: int, groups, shares, flip: str | None = None):
    rng = np.random.default_rng(seed)
    g = rng.choice(list(groups), size=n, p=list(shares))
    y = (rng.random(n) < 0.3).astype(float)
    p = np.clip(0.25 + 0.4 * y + rng.normal(0, 0.12, n), 0, 1)
    if flip:
        p = np.where(g == flip, np.clip(0.25 + rng.normal(0, 0.12, n), 0, 1), p)  # its churners are missed
    return y, p, pd.DataFrame({"age_band": g})


def test_a_small_group_that_would_flip_the_gap_makes_the_gate_insufficient_never_passed() -> None:
    y, p, frame = scored(6000, 1, ("18-34", "35-54", "65+"), (0.55, 0.42, 0.03), flip="65+")
    report = classification_fairness(y, p, frame, [["age_band"]], 0.45, min_group_size=300, replicates=200)
    name = "tpr_gap[age_band]"
    assert report.metrics[name] < 0.06  # the two large groups alone: a small gap
    [left_out] = report.excluded[name]
    assert left_out["group"] == "65+" and left_out["n"] < 300 and left_out["value"] < 0.3  # named, with its estimate
    assert report.with_excluded[name] > 0.5  # with it in, the gap is large
    sections = Sections(fairness=report)
    spec = gates(tpr_gap_age_band={"metric": name, "max": 0.15, "decide_on": "point"})
    result = evaluate_gates(spec, sections.metrics(), TASK, evidence=sections.evidence())
    [gate] = result.results
    assert gate.insufficient and not gate.passed and not gate.blocking  # on_insufficient: report
    assert "65+" in gate.reason and "left out for size" in gate.reason
    hard = gates(tpr_gap_age_band={"metric": name, "max": 0.15, "on_insufficient": "fail"})
    assert not evaluate_gates(hard, sections.metrics(), TASK, evidence=sections.evidence()).passed
    # the unqualified worst-of-all metric carries the left-out groups too
    assert report.excluded["tpr_gap"] and report.with_excluded["tpr_gap"] == report.with_excluded[name]
    assert report.excluded["equalized_odds_gap[age_band]"]
    text = render_gates(result, "t")
    assert "insufficient evidence" in text and "**PASSED**" in text.splitlines()[2]
    assert "- tpr_gap_age_band (`tpr_gap[age_band]`): left out for size: 65+" in text
    assert max(map(len, text.splitlines())) <= 200
    table = text.split("**Not decided")[0]
    assert "| tpr_gap_age_band" not in table  # not listed with the decided gates


def test_a_small_group_that_would_not_flip_is_named_and_the_gate_decides() -> None:
    y, p, frame = scored(6000, 2, ("18-34", "35-54", "65+"), (0.55, 0.42, 0.03))  # the small group is served alike
    report = classification_fairness(y, p, frame, [["age_band"]], 0.45, min_group_size=300, replicates=200)
    sections = Sections(fairness=report)
    spec = gates(tpr_gap_age_band={"metric": "tpr_gap[age_band]", "max": 0.25})
    result = evaluate_gates(spec, sections.metrics(), TASK, evidence=sections.evidence())
    [gate] = result.results
    assert gate.passed and gate.decided_on == "upper_bound" and gate.high is not None
    assert [g["group"] for g in gate.excluded] == ["65+"] and "65+" in gate.reason
    assert "- tpr_gap_age_band (`tpr_gap[age_band]`): left out for size: 65+" in render_gates(result, "t")


def test_recommendation_disparity_with_a_left_out_language_is_insufficient() -> None:
    """StreamRec: hit_disparity@10[language] 0.013 over two languages; the excluded ones were far worse."""
    n_items, users = 20, ["en"] * 400 + ["hi"] * 400 + ["ta"] * 60
    lists = np.tile(np.arange(10), (len(users), 1))
    relevant = sp.lil_matrix((len(users), n_items))
    for u, language in enumerate(users):
        relevant[u, (u % 10) if language != "ta" else 15] = 1  # ta users' item is never listed
    items = pd.DataFrame({"language": ["en"] * n_items})
    report = recommendation_fairness(
        lists,
        relevant.tocsr(),
        pd.DataFrame({"language": users}),
        items,
        [["language"]],
        [],
        k=10,
        min_group_size=200,
        replicates=100,
    )
    name = "hit_disparity@10[language]"
    assert report.metrics[name] == pytest.approx(0.0) and report.with_excluded[name] == pytest.approx(1.0)
    sections = Sections(fairness=report)
    spec = gates(**{"hit_disparity@10": {"max": 0.10}})
    [gate] = evaluate_gates(spec, sections.metrics(), "recommendation", evidence=sections.evidence()).results
    assert gate.insufficient and not gate.passed and "language: ta" in gate.reason


def test_vs_champion_on_the_rows_it_never_saw_shows_those_rows_not_the_slice_interval() -> None:
    from pipeline.gates.evaluate import ChampionReference

    keep = np.array([True, False, True])
    champion = ChampionReference("c:1", {"auc": 0.80}, rows=300, positives=60, keep=keep, left_out=100)
    spec = gates(g={"metric": "auc", "vs": "champion", "max_drop": 0.02})
    evidence = {"auc": Evidence(low=0.78, high=0.86, rows=400, positives=80)}
    [result] = evaluate_gates(
        spec,
        {"auc": 0.82},
        TASK,
        evidence=evidence,
        champion_reference=champion,
        challenger_on_compared_rows={"auc": 0.81},
    ).results
    assert result.passed and result.value == 0.81
    assert (result.rows, result.positives, result.low) == (300, 60, None)
