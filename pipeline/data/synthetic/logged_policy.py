"""Logged-policy tables with a KNOWN planted effect, for causal evaluation.

- `synthetic:streamrec_exposures`: (user, item) decisions of a recommendation policy. The
  policy recommends what the user likes (propensity rises with taste affinity), and users
  click what they like anyway, so the naive treated-minus-untreated click rate is about
  double the true effect of being recommended, RECOMMENDATION_EFFECT.
- `synthetic:streamflow_offers`: retention offers. The policy sends offers to engaged
  subscribers (who answer marketing), who would mostly stay anyway: the naive retention
  lift is about double the offer's true effect, OFFER_EFFECT.

Both log the policy's exact propensity and hold a randomized experiment (column `arm`:
treatment / holdout with probability 1/2 for EXPERIMENT_SHARE of units, `policy` for the
rest). Users, items and subscribers are the ones `synthetic:streamrec` /
`synthetic:streamflow` make with the same rows, seed and scenario; every new random draw
comes from a separate generator, so those tables keep their bytes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.data.synthetic import streamflow, streamrec
from pipeline.spec.schema import ScenarioSpec

RECOMMENDATION_EFFECT = 0.041  # the seed's causal ATE of a recommendation on clicks
OFFER_EFFECT = 0.05  # retention points an offer adds
EXPERIMENT_SHARE = 0.2
ARMS = ("policy", "treatment", "holdout")
PROPENSITY_RANGE = (0.05, 0.95)  # the policy explores: every unit could have gone either way


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _assign(
    units: np.ndarray, n_units: int, propensity: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(treated, logged propensity, arm) per row: experiment units get a coin flip, the rest the policy."""
    in_experiment = (rng.random(n_units) < EXPERIMENT_SHARE)[units]
    logged = np.where(in_experiment, 0.5, np.clip(propensity, *PROPENSITY_RANGE))
    treated = (rng.random(len(units)) < logged).astype(np.int64)
    arm = np.where(in_experiment, np.where(treated == 1, "treatment", "holdout"), "policy")
    return treated, logged, arm


def streamrec_exposures(rows: int, seed: int, scenario: ScenarioSpec) -> pd.DataFrame:
    """One row per (user, item) decision: recommended or not, its propensity, and the click."""
    rng = np.random.default_rng(seed % 2**64)  # replays synthetic:streamrec's catalogue draws only
    n_users = scenario.users or max(50, rows // 20)
    n_items = scenario.items or max(50, rows // 50)
    creators = streamrec._creators(max(10, n_items // 5), rng)
    items, _, item_factors, _ = streamrec._items(n_items, creators, rng)
    users, _, user_factors, _ = streamrec._users(n_users, rng)
    new = np.random.default_rng([seed % 2**64, 7])
    user = new.integers(0, n_users, size=rows)
    item = new.integers(0, n_items, size=rows)
    affinity = np.einsum("ij,ij->i", user_factors[user], item_factors[item]) / np.sqrt(streamrec.DIM)
    same = users["language"].to_numpy()[user] == items["language"].to_numpy()[item]
    organic = 0.9 * _sigmoid(-2.2 + 1.2 * affinity + 0.6 * same)  # clicks it would get unrecommended
    treated, propensity, arm = _assign(user, n_users, _sigmoid(-1.0 + 0.14 * affinity + 0.3 * same), new)
    clicked = (new.random(rows) < organic + RECOMMENDATION_EFFECT * treated).astype(np.int64)
    return pd.DataFrame(
        {
            "exposure_id": np.arange(rows, dtype=np.int64),
            "user_id": user.astype(np.int64),
            "item_id": item.astype(np.int64),
            "affinity": np.round(affinity, 4),
            "same_language": same.astype(np.int64),
            "user_language": users["language"].to_numpy()[user],
            "propensity": propensity,
            "recommended": treated,
            "clicked": clicked,
            "arm": pd.Categorical(arm, categories=list(ARMS)),
        }
    )


def streamflow_offers(rows: int, seed: int, scenario: ScenarioSpec) -> pd.DataFrame:
    """One row per subscriber of `synthetic:streamflow`: offered or not, its propensity, retained or not."""
    columns = streamflow._clean_snapshot(rows, seed, scenario)
    new = np.random.default_rng([seed % 2**64, 7])
    engagement = (np.log1p(columns["sessions_last_30d"]) - 2.7) / 0.6
    inactive = (columns["days_since_last_activity"] > 7).astype(float)
    organic = 0.9 * _sigmoid(0.6 + 0.9 * engagement - 0.8 * inactive)  # would stay without an offer
    treated, propensity, arm = _assign(np.arange(rows), rows, _sigmoid(-0.9 + 0.27 * engagement - 0.1 * inactive), new)
    retained = (new.random(rows) < organic + OFFER_EFFECT * treated).astype(np.int64)
    return pd.DataFrame(
        {
            "subscriber_id": columns["subscriber_id"],
            "plan_type": pd.Categorical(columns["plan_type"], categories=list(streamflow.PLANS)),
            "age_band": columns["age_band"],
            "sessions_last_30d": columns["sessions_last_30d"],
            "days_since_last_activity": columns["days_since_last_activity"],
            "tenure_months": columns["tenure_months"],
            "propensity": propensity,
            "offered": treated,
            "retained": retained,
            "arm": pd.Categorical(arm, categories=list(ARMS)),
        }
    )
