"""Causal evaluation: the planted effect is recovered by doubly robust estimation, not by the naive difference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pipeline.causal import ab_test, estimate_effects
from pipeline.causal.evaluate import analyse
from pipeline.data.errors import DataSourceError
from pipeline.data.sources import load_source
from pipeline.data.synthetic import streamflow, streamrec
from pipeline.data.synthetic.logged_policy import OFFER_EFFECT, RECOMMENDATION_EFFECT
from pipeline.gates.evaluate import evaluate_gates
from pipeline.spec.schema import CausalSpec, ExperimentSpec, GateSpec, ScenarioSpec, SourceSpec


def causal_spec(source: str, treatment: str, outcome: str, covariates: list[str], **extra) -> CausalSpec:
    return CausalSpec(
        data=SourceSpec(source=source, rows=20000, seed=11),
        treatment=treatment,
        outcome=outcome,
        propensity="propensity",
        covariates=covariates,
        experiment=ExperimentSpec(column="arm"),
        bootstrap=200,
        **extra,
    )


@pytest.mark.parametrize(
    ("source", "treatment", "outcome", "covariates", "truth"),
    [
        (
            "synthetic:streamrec_exposures",
            "recommended",
            "clicked",
            ["affinity", "same_language"],
            RECOMMENDATION_EFFECT,
        ),
        (
            "synthetic:streamflow_offers",
            "offered",
            "retained",
            ["sessions_last_30d", "days_since_last_activity", "tenure_months", "plan_type"],
            OFFER_EFFECT,
        ),
    ],
)
def test_doubly_robust_covers_the_planted_effect_and_naive_does_not(source, treatment, outcome, covariates, truth):
    spec = causal_spec(source, treatment, outcome, covariates)
    report = analyse(load_source(spec.data, None), spec)
    m = report.metrics
    assert m["ate_dr_low"] <= truth <= m["ate_dr_high"]
    assert m["ate_naive_low"] > truth  # confounded: the policy treats units that do well anyway
    assert 1.5 < report.naive_over_causal < 2.8  # the seed's lesson: naive about double the effect
    assert m["ate"] == m["ate_dr"]
    assert m["ab_effect_low"] <= truth <= m["ab_effect_high"]  # the randomized holdout is unbiased
    assert 0 < m["ab_mde"] < 0.1 and 0 <= m["ab_p_value"] <= 1  # 20k rows: ~4k in the experiment
    assert report.rows["treated"] + report.rows["untreated"] == report.rows["used"]


def test_estimators_agree_without_confounding() -> None:
    rng = np.random.default_rng(8)
    n = 40000
    x = rng.normal(size=n)
    t = (rng.random(n) < 0.3).astype(float)
    y = (rng.random(n) < 0.2 + 0.05 * t + 0.05 * (x > 0)).astype(float)
    out = estimate_effects(t, y, np.full(n, 0.3), pd.DataFrame({"x": x}), replicates=100)
    for name in ("naive", "ipw", "snipw", "dr"):
        assert out[name].low <= 0.05 <= out[name].high, name
    again = estimate_effects(t, y, np.full(n, 0.3), pd.DataFrame({"x": x}), replicates=100)
    assert again["dr"] == out["dr"]  # seeded


def test_ab_test_effect_p_value_and_minimum_detectable_effect() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.random(10000) < 0.55, rng.random(10000) < 0.50
    result = ab_test(a, b, alpha=0.05, power=0.8)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert result.effect == pytest.approx(a.mean() - b.mean())
    assert result.mde == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) * se)
    assert result.p_value < 1e-6 and result.low < 0.05 < result.high
    same = ab_test(rng.random(5000) < 0.5, rng.random(5000) < 0.5)
    assert same.p_value > 0.01
    assert ab_test(np.ones(1), np.ones(5)).effect is None


def test_too_few_treated_rows_is_insufficient_and_not_blocking() -> None:
    spec = causal_spec("synthetic:streamflow_offers", "offered", "retained", ["tenure_months"], min_group_size=5000)
    spec.data.rows = 3000
    report = analyse(load_source(spec.data, None), spec)
    assert report.metrics["ate"] is None and report.metrics["ab_effect"] is None
    assert report.insufficient["ate"].startswith("insufficient data")
    gates = {"ate": GateSpec(min=0.01)}
    result = evaluate_gates(gates, report.metrics, "binary_classification", insufficient=report.insufficient)
    assert result.passed and result.results[0].insufficient
    assert not evaluate_gates(gates, report.metrics, "binary_classification").passed  # undeclared: plain "no data"


def test_missing_column_is_a_clear_error() -> None:
    spec = causal_spec("synthetic:streamflow_offers", "offered", "retained", ["no_such_column"])
    spec.data.rows = 500
    with pytest.raises(DataSourceError, match="no_such_column"):
        analyse(load_source(spec.data, None), spec)


def test_logged_tables_share_ids_and_leave_existing_tables_alone() -> None:
    scenario = ScenarioSpec()
    before = streamrec.generate(2000, 11, scenario)
    exposures = load_source(SourceSpec(source="synthetic:streamrec_exposures", rows=2000, seed=11), None)
    users = before["users"].set_index("user_id")
    assert (
        users.loc[exposures["user_id"], "language"].astype(str).to_numpy()
        == exposures["user_language"].astype(str).to_numpy()
    ).all()
    assert exposures["item_id"].max() < len(before["items"])
    after = streamrec.generate(2000, 11, scenario)
    pd.testing.assert_frame_equal(before["interactions"], after["interactions"])
    offers = load_source(SourceSpec(source="synthetic:streamflow_offers", rows=2000, seed=7), None)
    churn = streamflow.generate(2000, 7, scenario)
    assert set(offers["subscriber_id"]) == set(churn["subscriber_id"].dropna())
    assert set(offers["arm"]) == {"policy", "treatment", "holdout"}
    assert offers.loc[offers["arm"] != "policy", "propensity"].eq(0.5).all()
