"""`vs: champion` with the champion re-scored on the challenger's rows: compared, or not comparable."""

from __future__ import annotations

from pipeline.gates.evaluate import ChampionReference, evaluate_gates
from pipeline.gates.report import render_gates
from pipeline.spec.schema import GateSpec

GATES = {"auc_vs_champion": GateSpec(metric="auc", vs="champion", max_drop=0.01)}
RECORDED = {"auc": 0.95}  # the champion's own test rows: never used when a re-scored reference is given


def _ref(auc: float | None = 0.80, comparable: bool = True, reason: str = "") -> ChampionReference:
    metrics = None if auc is None else {"auc": auc, "brier": 0.1}
    return ChampionReference("churn:v1", metrics, 368, 59, "test", comparable, reason)


def test_the_rescored_value_is_the_reference_and_the_rows_are_named() -> None:
    report = evaluate_gates(GATES, {"auc": 0.805}, "binary_classification", RECORDED, champion_reference=_ref())
    [result] = report.results
    assert result.passed and result.reference == 0.80 and result.comparable
    assert (result.reference_rows, result.reference_split) == (368, "test")
    assert "vs champion churn:v1 0.8" in result.reason and "368 test rows" in result.reason
    assert "| 0.8000 (same 368 test rows) |" in render_gates(report, "t")
    worse = evaluate_gates(GATES, {"auc": 0.78}, "binary_classification", RECORDED, champion_reference=_ref())
    assert not worse.passed


def test_without_a_rescored_reference_the_recorded_metrics_are_used_as_before() -> None:
    report = evaluate_gates(GATES, {"auc": 0.80}, "binary_classification", RECORDED)
    assert not report.passed and report.results[0].reference == 0.95 and report.results[0].comparable is None


def test_not_comparable_blocks_by_default_and_passes_when_the_spec_says_so() -> None:
    ref = _ref(None, comparable=False, reason="the rows lack its input column(s) tenure_months")
    blocked = evaluate_gates(GATES, {"auc": 0.9}, "binary_classification", RECORDED, champion_reference=ref)
    [result] = blocked.results
    assert not blocked.passed and result.comparable is False and result.reference is None
    assert result.reason.startswith("not comparable: champion churn:v1") and "tenure_months" in result.reason
    assert "if_not_comparable: block" in result.rule
    assert "| not comparable |" in render_gates(blocked, "t")
    lenient = {"auc_vs_champion": GateSpec(metric="auc", vs="champion", max_drop=0.01, if_not_comparable="pass")}
    passed = evaluate_gates(lenient, {"auc": 0.9}, "binary_classification", RECORDED, champion_reference=ref)
    assert passed.passed and passed.results[0].comparable is False and "passes" in passed.results[0].reason
    # no challenger value is no evidence, whatever the policy
    assert not evaluate_gates(lenient, {}, "binary_classification", RECORDED, champion_reference=ref).passed


def test_a_metric_the_rescoring_does_not_compute_is_not_comparable() -> None:
    gates = {"gap": GateSpec(metric="tpr_gap[age_band]", vs="champion", max_drop=0.05)}
    recorded = {"tpr_gap[age_band]": 0.02}
    report = evaluate_gates(
        gates, {"tpr_gap[age_band]": 0.03}, "binary_classification", recorded, champion_reference=_ref()
    )
    assert not report.passed and report.results[0].comparable is False
    assert "not re-computed" in report.results[0].reason
