"""Gate evaluation fails closed: a non-finite bound or metric never passes (issue 15, finding 1).

The schema refuses NaN bounds at `keel check`, but gates are also built in code (backtests,
tests, older bundles); the evaluation itself must never read `value < nan` (False) as a pass.
"""

from __future__ import annotations

import math

import pytest

from pipeline.gates.evaluate import evaluate_gates
from pipeline.spec.schema import GateSpec

TASK = "binary_classification"


def unchecked(**fields: object) -> GateSpec:
    """A GateSpec as code could build it, bypassing validation (model_construct)."""
    return GateSpec.model_construct(**{"blocking": True, "on_insufficient": "report", **fields})


@pytest.mark.parametrize(
    "gate",
    [
        unchecked(min=math.nan),
        unchecked(max=math.nan),
        unchecked(min=math.inf),
        unchecked(min=-math.inf, max=math.nan),
        unchecked(),  # no bound at all
        unchecked(vs="champion", max_drop=math.nan),
        unchecked(vs="champion", max_relative_drop=math.inf),
        unchecked(vs="champion"),  # no drop bound
    ],
    ids=["nan-min", "nan-max", "inf-min", "inf-and-nan", "no-bound", "nan-drop", "inf-relative", "no-drop"],
)
def test_broken_rule_never_passes(gate: GateSpec) -> None:
    report = evaluate_gates({"auc": gate}, {"auc": 0.73}, TASK, champion={"auc": 0.9})
    assert not report.passed
    [result] = report.results
    assert not result.passed and result.rule == "invalid rule"
    assert "cannot pass" in result.reason


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, None, "0.9x", True, 10**400])
def test_non_finite_or_missing_metric_never_passes(value: object) -> None:
    gates = {"auc": GateSpec(max=1.0), "auc_vs": GateSpec(metric="auc", vs="champion", max_drop=1.0)}
    report = evaluate_gates(gates, {"auc": value}, TASK, champion={"auc": 0.5})
    assert [r.passed for r in report.results] == [False, False]


def test_infinite_champion_value_fails_the_relative_gate() -> None:
    gates = {"auc_vs": GateSpec(metric="auc", vs="champion", max_drop=0.01)}
    assert not evaluate_gates(gates, {"auc": 0.8}, TASK, champion={"auc": -math.inf}).passed


def test_spec_refuses_a_nan_bound_at_construction() -> None:
    with pytest.raises(ValueError, match="finite"):
        GateSpec(min=math.nan)


def test_valid_gates_still_pass() -> None:
    gates = {"auc": GateSpec(min=0.7), "auc_vs": GateSpec(metric="auc", vs="champion", max_relative_drop=0.05)}
    assert evaluate_gates(gates, {"auc": 0.8}, TASK, champion={"auc": 0.81}).passed
