"""The stage metric's margin test (ADR 0023): the statistic by hand, the boundaries over many looks, decisions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import optimize, stats

from pipeline.rollout.evaluate import evaluate_stage
from pipeline.rollout.record import RolloutState
from pipeline.rollout.stats import (
    boundaries,
    detectable_margin,
    margin_verdict,
    needed_samples,
    ratio_score_test,
    restricted_rates,
    two_proportion_test,
)
from pipeline.serving.request_log import FIELDS
from pipeline.spec.schema import EvaluationRollback, RollbackSpec, RolloutSpec, StageSpec

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_restricted_mle_and_score_statistic_match_a_hand_computation() -> None:
    s1, n1, s2, n2, r = 180, 1500, 40, 400, 0.9
    loglik = lambda p: -(s1 * math.log(p) + (n1 - s1) * math.log(1 - p) + s2 * math.log(r * p)  # noqa: E731
                         + (n2 - s2) * math.log(1 - r * p))  # fmt: skip
    q1 = optimize.minimize_scalar(loglik, bounds=(1e-6, 0.999), method="bounded", options={"xatol": 1e-12}).x
    assert restricted_rates(s1, n1, s2, n2, r) == pytest.approx((q1, r * q1), rel=1e-6)
    # Farrington-Manning: (p2 - r p1) / sqrt(q2(1-q2)/n2 + r^2 q1(1-q1)/n1)
    z = (0.10 - 0.9 * 0.12) / math.sqrt(r * q1 * (1 - r * q1) / n2 + r**2 * q1 * (1 - q1) / n1)
    assert ratio_score_test(s1, n1, s2, n2, r) == pytest.approx(z, rel=1e-6)
    # no margin: the restricted MLE is the pooled rate, so it is the pooled two-proportion z
    assert ratio_score_test(100, 1000, 70, 1000, 1.0) == pytest.approx(two_proportion_test(100, 1000, 70, 1000)[0])
    assert ratio_score_test(0, 100, 0, 100, 0.9) == 0.0  # no events: no evidence either way


def test_boundaries_at_given_information_times() -> None:
    c_r, c_a = stats.norm.isf(0.05 / 3), stats.norm.isf(0.05 / 2)  # 2.128, 1.960
    assert boundaries(1.0, 0.05) == pytest.approx((c_r, c_a))
    assert boundaries(0.25, 0.05) == (pytest.approx(2 * c_r), math.inf)  # before the end: no advance
    assert boundaries(4.0, 0.05) == pytest.approx((2 * c_r, 2 * c_a))  # past it: rising with sqrt(t)
    assert boundaries(0.0, 0.05) == (math.inf, math.inf)
    assert boundaries(0.3, 0.05, "none") == pytest.approx((1.6449, 1.6449), abs=1e-4)
    with pytest.raises(ValueError, match="unknown sequential rule"):
        boundaries(1.0, 0.05, "pocock")


def test_hourly_looks_keep_each_error_at_alpha_and_a_fixed_level_does_not() -> None:
    """A score process under H0 (a Gaussian random walk), looked at hourly for 3 days and 3 more while holding."""
    rng = np.random.default_rng(0)
    hours, paths, alpha = 72, 20_000, 0.05
    steps = rng.standard_normal((paths, 2 * hours))
    b = np.cumsum(steps, axis=1) / math.sqrt(hours)  # B(t), t = hour / 72
    t = np.arange(1, 2 * hours + 1) / hours
    z = b / np.sqrt(t)
    rollback = np.array([boundaries(x, alpha)[0] for x in t])
    advance = np.array([boundaries(x, alpha)[1] for x in t])
    fixed = boundaries(1.0, alpha, "none")[0]
    se = math.sqrt(alpha * (1 - alpha) / paths)
    assert (z <= -rollback).any(axis=1).mean() < alpha + 3 * se  # the rollback direction: 0.036 measured
    assert (z >= advance).any(axis=1).mean() < alpha + 3 * se  # the advance direction: 0.044
    assert (z[:, :hours] <= -fixed).any(axis=1).mean() > 3 * alpha  # the old per-look level: 0.29 in 72 looks


def test_needed_sample_and_detectable_margin_agree() -> None:
    need = needed_samples(0.10, 0.25, 0.10, 1.96)
    var = 0.09 * (1 / 0.25 + 0.81 / 0.75)
    assert need == pytest.approx((1.96 + stats.norm.isf(0.2)) ** 2 * var / 0.01**2)
    mde = detectable_margin(0.10, int(need * 0.75), int(need * 0.25), 1.96)
    assert mde == pytest.approx(0.10, rel=0.08)  # the same power calculation read backwards (R^2 ~ 1)
    assert needed_samples(0.10, 0.25, 0.0, 1.96) == math.inf  # a 0 margin is superiority, not planned here


def test_the_verdict_tests_the_margin_in_both_directions() -> None:
    ok = margin_verdict(1000, 10_000, 1000, 10_000, 0.10, 0.05, 1.0, "obrien_fleming")
    assert ok["verdict"] == "non_inferior" and ok["p_noninferior"] < 0.025
    bad = margin_verdict(1000, 10_000, 700, 10_000, 0.10, 0.05, 1.0, "obrien_fleming")
    assert bad["verdict"] == "inferior" and bad["p_value"] < 0.0167
    # a 5% observed drop within a 10% margin: neither evidence of a drop beyond it nor of non-inferiority
    mid = margin_verdict(100, 1000, 95, 1000, 0.10, 0.05, 1.0, "obrien_fleming")
    assert mid["verdict"] == "inconclusive"


# ---------------------------------------------------------------- decisions through evaluate_stage


def _spec(listed: bool = True, sequential: str = "obrien_fleming") -> RolloutSpec:
    checks = ["ctr"] if listed else []
    evaluation = EvaluationRollback(metric="ctr", max_relative_drop=0.10, significance=0.05, sequential=sequential)
    return RolloutSpec(
        name="t",
        stages=[
            StageSpec(name="canary", traffic=0.25, duration="2d", checks=checks),
            StageSpec(name="full", traffic=1.0),
        ],
        rollback=RollbackSpec(evaluation=evaluation),
    )


def _state(spec: RolloutSpec) -> RolloutState:
    stages = [s.model_dump() for s in spec.stages]
    return RolloutState(
        name="t", rollout_id="r1", challenger="b", champion="a", stages=stages, stage_index=0, stage="canary",
        traffic=0.25, stage_started_at=T0.isoformat(), status="active", started_at=T0.isoformat(),
        updated_at=T0.isoformat(),
    )  # fmt: skip


def _logs(n1: int, s1: int, n2: int, s2: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The request-log and outcomes frames of n1 champion and n2 challenger requests, s1 and s2 of them clicked."""
    side = ["champion"] * n1 + ["challenger"] * n2
    ids = [f"q{i}" for i in range(n1 + n2)]
    frame = pd.DataFrame({f: None for f in FIELDS}, index=range(n1 + n2))
    frame = frame.assign(request_id=ids, side=side, stage="canary", rollout_id="r1", latency_ms=2.0, status="ok",
                         shadow=False)  # fmt: skip
    clicked = ids[:s1] + ids[n1 : n1 + s2]
    return frame, pd.DataFrame({"request_id": clicked, "outcome": "ctr", "value": 1.0})


def test_non_inferior_advances_after_the_duration() -> None:
    spec = _spec()
    requests, outcomes = _logs(30_000, 3000, 10_000, 1000)  # equal CTR, enough for a 10% margin (z = 3.0)
    early = evaluate_stage(_state(spec), spec, requests, outcomes, T0 + timedelta(days=1))
    assert early.decision == "hold" and "1.0d of 2.0d" in early.reason  # advance is tested from t = 1 only
    report = evaluate_stage(_state(spec), spec, requests, outcomes, T0 + timedelta(days=2))
    assert report.decision == "advance", report.reason
    assert report.metric["verdict"] == "non_inferior" and report.metric["information_time"] == pytest.approx(1.0)


def test_inferior_rolls_back_at_once_and_an_early_noisy_drop_does_not() -> None:
    spec = _spec()
    requests, outcomes = _logs(12_000, 1200, 4000, 240)  # -40%: far beyond the 10% margin (z = -6.0)
    report = evaluate_stage(_state(spec), spec, requests, outcomes, T0 + timedelta(hours=12))  # t = 0.25
    assert report.decision == "rollback" and "a drop beyond the margin" in report.reason
    assert report.metric["z"] <= -report.metric["z_rollback"]
    # -33% on 1000 requests (z = -2.9): past the old fixed level at any look, not this early one (4.26)
    requests, outcomes = _logs(3000, 450, 1000, 100)
    fixed = margin_verdict(450, 3000, 100, 1000, 0.10, 0.05, 0.25, "none")
    assert fixed["verdict"] == "inferior"
    report = evaluate_stage(_state(spec), spec, requests, outcomes, T0 + timedelta(hours=12))
    assert report.decision == "hold" and report.metric["verdict"] == "inconclusive", report.reason


def test_inconclusive_after_the_duration_holds_and_says_what_sample_would_decide() -> None:
    spec = _spec()
    requests, outcomes = _logs(600, 60, 200, 20)  # equal CTR, far too few requests for a 10% margin
    report = evaluate_stage(_state(spec), spec, requests, outcomes, T0 + timedelta(days=2, hours=1))
    assert report.decision == "hold" and report.metric["verdict"] == "inconclusive"
    need = report.metric["needed_samples"]
    assert need == pytest.approx(needed_samples(0.10, 0.25, 0.10, stats.norm.isf(0.025)))
    assert f"needs about {math.ceil(need):,} requests" in report.reason
    assert "inconclusive: ctr" in report.reason and "decide by hand" in report.reason
    # the metric not listed in the stage's checks: it only guards against a drop, so the stage advances
    spec = _spec(listed=False)
    report = evaluate_stage(_state(spec), spec, requests, outcomes, T0 + timedelta(days=2, hours=1))
    assert report.decision == "advance", report.reason


def test_sequential_is_a_spec_key_with_known_values() -> None:
    assert EvaluationRollback().sequential == "obrien_fleming"
    with pytest.raises(ValidationError):
        EvaluationRollback(sequential="pocock")


def test_the_metric_listed_where_it_cannot_compare_is_a_spec_error() -> None:
    from pipeline.spec.errors import SpecError
    from pipeline.spec.load import load_spec

    spec_path = Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml"
    load_spec(spec_path, ["rollout.stages.1.checks=[error_rate,ctr]"])  # canary 10%: compares both sides
    with pytest.raises(SpecError) as info:
        load_spec(spec_path, ["rollout.stages.4.checks=[ctr]"])  # full 100%: no champion to compare with
    assert "rollout.stages.4.checks.0" in info.value.render() and "hold the stage forever" in info.value.render()
    with pytest.raises(SpecError, match="sequential"):
        load_spec(spec_path, ["rollout.rollback.evaluation.sequential=pocock"])
