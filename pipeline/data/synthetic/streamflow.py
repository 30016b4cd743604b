"""Synthetic StreamFlow subscriber snapshots with a planted, learnable churn signal.

Churn follows a logistic function of low engagement, long inactivity, support
tickets, short tenure, plan and low content diversity, plus noise, so a good model
reaches an AUC around 0.85 rather than a suspicious 0.99. Drift and segment shifts
are applied before the label is drawn (a real population change moves churn with it);
a unit bug is applied after (a pipeline bug leaves the truth unchanged).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.errors import DataSourceError
from pipeline.data.synthetic.rules import ColumnRule, build_frame
from pipeline.data.synthetic.scenario import apply_shifts, apply_unit_bug, check_scenario, clip, corrupt
from pipeline.spec.schema import ScenarioSpec

PLANS = ("basic", "standard", "premium", "family")
AGE_BANDS = ("18-24", "25-34", "35-49", "50+")
LABEL = "churned"
SEGMENT = "plan_type"

RULES: dict[str, ColumnRule] = {
    "subscriber_id": ColumnRule("str", unique=True),
    "snapshot_date": ColumnRule("datetime"),
    "sessions_last_30d": ColumnRule("int", 0, 1000),
    "avg_session_minutes": ColumnRule("float", 0, 600),
    "days_since_last_activity": ColumnRule("int", 0, 3650),
    "monthly_charges": ColumnRule("float", 0, 500),
    "support_tickets_last_90d": ColumnRule("int", 0, 200),
    "plan_type": ColumnRule("category", allowed=PLANS, invalid="student"),
    "tenure_months": ColumnRule("int", 0, 600),
    "distinct_titles_last_30d": ColumnRule("int", 0, 5000),
    "age_band": ColumnRule("category", allowed=AGE_BANDS, nullable=True, invalid="unknown"),
    LABEL: ColumnRule("int", allowed=("0", "1")),
}
NUMERIC_FEATURES = frozenset(n for n, r in RULES.items() if r.numeric and n != LABEL)

FIRST_SNAPSHOT = np.datetime64("2024-01-07")
WEEKS = 12
PLAN_PRICE = {"basic": 8.99, "standard": 13.99, "premium": 19.99, "family": 24.99}
PLAN_CHURN_EFFECT = {"basic": 0.45, "standard": 0.0, "premium": -0.35, "family": -0.55}
INTERCEPT = -2.55
PREVIOUS_WEEKS = 4
SEGMENT_SESSION_GAIN = {"basic": 2.0, "standard": 3.0, "premium": 6.0, "family": 4.0}
"""Sessions per 30 days each plan gained over PREVIOUS_WEEKS (premium: a feature launch)."""
CHURNER_GAIN_LOSS = 1.0


def generate(rows: int, seed: int, scenario: ScenarioSpec) -> pd.DataFrame:
    """One row per subscriber snapshot, sorted by snapshot_date; same seed, same bytes."""
    columns = _clean_snapshot(rows, seed, scenario)
    corrupt_rng = np.random.default_rng([seed % 2**64, 1])
    corrupt(columns, RULES, scenario.corrupt_fraction, corrupt_rng, exclude=frozenset({LABEL}))
    return build_frame(columns, RULES)


def generate_previous(rows: int, seed: int, scenario: ScenarioSpec) -> pd.DataFrame:
    """The same subscribers PREVIOUS_WEEKS earlier (`synthetic:streamflow_previous`), for masked churners.

    Built from `generate`'s clean snapshot with the same rows, seed and scenario, so ids match
    one to one; its own random stream leaves `generate`'s bytes unchanged. Not corrupted: the
    current snapshot already exercises quarantine.
    """
    columns = _clean_snapshot(rows, seed, scenario)
    return build_frame(_drift_back(columns, np.random.default_rng([seed % 2**64, 2])), RULES)


def _clean_snapshot(rows: int, seed: int, scenario: ScenarioSpec) -> dict[str, np.ndarray]:
    check_scenario(scenario, RULES, SEGMENT, set(NUMERIC_FEATURES))
    if scenario.items is not None or scenario.users is not None:
        raise DataSourceError(
            "scenario.items / scenario.users size synthetic:streamrec; streamflow has one row per subscriber"
        )
    rng = np.random.default_rng(seed % 2**64)
    draws = _draw(rows, rng)
    columns = draws["columns"]
    apply_shifts(columns, scenario, RULES, segment=columns[SEGMENT])
    columns[LABEL] = _churn(columns, draws["noise"], draws["uniform"])
    apply_unit_bug(columns, scenario, RULES)
    return columns


def _drift_back(current: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Undo PREVIOUS_WEEKS of per-segment session growth: churners mostly did not grow.

    A subscriber's gain is SEGMENT_SESSION_GAIN[plan] x a factor around 1 (around 0 for
    churners), so the masked-churner list is enriched in churners without being a copy of them.
    """
    n = len(current["subscriber_id"])
    factor = rng.normal(1.0, 0.5, size=n) - CHURNER_GAIN_LOSS * current[LABEL]
    gain = np.array([SEGMENT_SESSION_GAIN[p] for p in PLANS])[_plan_index(current[SEGMENT])] * factor
    previous = dict(current)
    sessions = clip(current["sessions_last_30d"] - gain, RULES["sessions_last_30d"])
    kept = np.divide(sessions, current["sessions_last_30d"], out=np.ones(n), where=current["sessions_last_30d"] > 0)
    titles = np.minimum(current["distinct_titles_last_30d"] * np.minimum(kept, 1.0), sessions)
    previous["sessions_last_30d"] = sessions
    previous["distinct_titles_last_30d"] = clip(titles, RULES["distinct_titles_last_30d"])
    previous["tenure_months"] = clip(current["tenure_months"] - 1, RULES["tenure_months"])  # 4 weeks: a month
    previous["snapshot_date"] = current["snapshot_date"] - np.timedelta64(7 * PREVIOUS_WEEKS, "D")
    previous[LABEL] = np.zeros(n)  # all of them were still subscribers PREVIOUS_WEEKS later
    return previous


def _plan_index(plans: np.ndarray) -> np.ndarray:
    return pd.Categorical(plans, categories=PLANS).codes


def _draw(n: int, rng: np.random.Generator) -> dict[str, Any]:
    """Every random number the generator uses, in a fixed order, independent of the scenario."""
    week = np.sort(rng.integers(0, WEEKS, size=n))
    plan_idx = rng.choice(len(PLANS), size=n, p=[0.35, 0.35, 0.15, 0.15])
    engagement = rng.normal(0.0, 1.0, size=n)
    sessions = rng.poisson(np.exp(2.7 + 0.55 * engagement))
    minutes = np.exp(3.4 + 0.15 * engagement + rng.normal(0.0, 0.4, size=n))
    inactivity = rng.exponential(4.0 * np.exp(-0.7 * engagement))
    charges = np.array([PLAN_PRICE[p] for p in PLANS])[plan_idx] + np.abs(rng.normal(0.0, 3.0, size=n))
    tickets = rng.poisson(0.5 + 0.6 * rng.exponential(1.0, size=n))
    tenure = rng.gamma(1.3, 15.0, size=n)
    diversity = rng.beta(5.0, 3.0, size=n)
    titles = rng.binomial(sessions, diversity)
    age_idx = rng.choice(len(AGE_BANDS), size=n, p=[0.18, 0.32, 0.32, 0.18])
    age = np.asarray(AGE_BANDS, dtype=object)[age_idx]
    age[rng.random(n) < 0.03] = None
    ids = np.char.add("sub_", np.char.zfill(np.arange(1, n + 1).astype(str), 6)).astype(object)
    columns = {
        "subscriber_id": ids,
        "snapshot_date": (FIRST_SNAPSHOT + 7 * week).astype("datetime64[ns]"),
        "sessions_last_30d": sessions.astype(float),
        "avg_session_minutes": minutes,
        "days_since_last_activity": inactivity,
        "monthly_charges": np.round(charges, 2),
        "support_tickets_last_90d": tickets.astype(float),
        "plan_type": np.asarray(PLANS, dtype=object)[plan_idx],
        "tenure_months": tenure,
        "distinct_titles_last_30d": titles.astype(float),
        "age_band": age,
    }
    for name, rule in RULES.items():
        if rule.numeric and name in columns:
            columns[name] = clip(columns[name], rule)
    plan_effect = np.array([PLAN_CHURN_EFFECT[p] for p in PLANS])[plan_idx]
    return {"columns": columns, "noise": rng.normal(0.0, 0.6, size=n) + plan_effect, "uniform": rng.random(n)}


def _churn(columns: dict[str, np.ndarray], noise: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Draw the label from fixed-reference standardised features, so a shifted feature moves churn.

    `noise` already holds the plan effect: plans are never shifted, so it can be drawn up front.
    """
    sessions = np.log1p(columns["sessions_last_30d"])
    ratio = np.divide(
        columns["distinct_titles_last_30d"],
        columns["sessions_last_30d"],
        out=np.zeros_like(sessions),
        where=columns["sessions_last_30d"] > 0,
    )
    logit = (
        INTERCEPT
        - 0.80 * (sessions - 2.7) / 0.6
        + 0.70 * (np.log1p(columns["days_since_last_activity"]) - 1.5) / 0.8
        + 0.35 * (columns["support_tickets_last_90d"] - 1.0)
        - 0.50 * (np.log1p(columns["tenure_months"]) - 2.7) / 0.9
        - 0.40 * (ratio - 0.62) / 0.17
        + noise
    )
    # Non-linear effects real churn data shows and a linear model cannot express directly:
    # a cliff after three weeks of inactivity, an early-tenure risk, and price sensitivity that
    # only matters to subscribers who barely use the service (an interaction).
    low_use = columns["sessions_last_30d"] < 10
    logit += 1.5 * (columns["days_since_last_activity"] > 7) - 0.3
    logit += 1.0 * (columns["tenure_months"] < 6) - 0.2
    logit += 1.8 * (low_use & (columns["monthly_charges"] > 16)) - 0.9 * low_use
    return (uniform < 1.0 / (1.0 + np.exp(-logit))).astype(float)
