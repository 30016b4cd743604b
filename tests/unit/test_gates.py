"""Gates decide promotion: absolute bounds, vs champion, vs baseline; no data is a failure."""

from __future__ import annotations

import math

from pipeline.gates.evaluate import evaluate_gates, render_markdown
from pipeline.spec.schema import GateSpec

TASK = "binary_classification"


def gates(**specs: dict) -> dict[str, GateSpec]:
    return {name: GateSpec(**spec) for name, spec in specs.items()}


def test_absolute_bounds() -> None:
    spec = gates(auc={"min": 0.8}, brier={"max": 0.2})
    assert evaluate_gates(spec, {"auc": 0.85, "brier": 0.1}, TASK).passed
    report = evaluate_gates(spec, {"auc": 0.79, "brier": 0.1}, TASK)
    assert not report.passed
    [failed] = report.failed
    assert (failed.name, failed.value, failed.reason) == ("auc", 0.79, "auc 0.79 is below min 0.8")


def test_one_threshold_flips_the_decision() -> None:
    metrics = {"auc": 0.84}
    assert evaluate_gates(gates(auc={"min": 0.80}), metrics, TASK).passed
    assert not evaluate_gates(gates(auc={"min": 0.85}), metrics, TASK).passed


def test_missing_or_nan_metric_fails() -> None:
    spec = gates(auc={"min": 0.5})
    assert not evaluate_gates(spec, {}, TASK).passed
    assert not evaluate_gates(spec, {"auc": math.nan}, TASK).passed


def test_vs_champion_respects_metric_direction() -> None:
    spec = gates(
        auc_vs={"metric": "auc", "vs": "champion", "max_drop": 0.01},
        brier_vs={"metric": "brier", "vs": "champion", "max_drop": 0.005},
    )
    champion = {"auc": 0.85, "brier": 0.10}
    assert evaluate_gates(spec, {"auc": 0.845, "brier": 0.104}, TASK, champion=champion).passed
    report = evaluate_gates(spec, {"auc": 0.83, "brier": 0.11}, TASK, champion=champion)
    assert {r.name for r in report.failed} == {"auc_vs", "brier_vs"}
    assert report.failed[0].reference == 0.85
    assert "vs champion 0.85" in report.failed[0].reason


def test_relative_drop_and_quiet_degradation_vs_baseline() -> None:
    """The seed's incident: each weekly model within 2% of the last, 8% below the baseline."""
    spec = gates(
        ndcg_vs_champion={"metric": "ndcg@20", "vs": "champion", "max_relative_drop": 0.02},
        ndcg_vs_baseline={"metric": "ndcg@20", "vs": "baseline", "max_relative_drop": 0.05},
    )
    report = evaluate_gates(
        spec, {"ndcg@20": 0.171}, "recommendation", champion={"ndcg@20": 0.174}, baseline={"ndcg@20": 0.186}
    )
    assert [r.passed for r in report.results] == [True, False]


def test_no_champion_yet_passes_and_says_so() -> None:
    report = evaluate_gates(gates(g={"metric": "auc", "vs": "champion", "max_drop": 0.01}), {"auc": 0.7}, TASK)
    assert report.passed
    assert "no champion yet" in report.results[0].reason


def test_non_blocking_gate_is_reported_but_does_not_block() -> None:
    report = evaluate_gates(gates(f1={"min": 0.9, "blocking": False}), {"f1": 0.5}, TASK)
    assert report.passed and len(report.failed) == 1
    assert "| fail, non-blocking |" in render_markdown(report, "Gates")


def test_markdown_names_gate_value_bound_and_champion() -> None:
    spec = gates(auc={"min": 0.9}, auc_vs={"metric": "auc", "vs": "champion", "max_drop": 0.0})
    text = render_markdown(evaluate_gates(spec, {"auc": 0.8}, TASK, champion={"auc": 0.85}), "Gates")
    assert "**FAILED**" in text
    assert "auc 0.8 is below min 0.9" in text.splitlines()[2]  # the verdict line says why
    assert "| auc_vs (`auc`) | 0.8000 | vs champion: drop <= 0 | 0.8500 | — | **FAIL** |" in text
