"""Synthetic StreamRec impressions with users, items and creators.

Clicks come from latent user/item taste factors (so a two-tower model has something
to learn), discounted by position. The logging policy mixes Zipf popularity with
taste-cluster personalisation and under-exposes one language ("hi"); the probability
it chose the shown item is recorded as `propensity` for causal evaluation. The policy
is built from per-cluster distributions so propensities stay exact and cheap at any size.
`scenario.bursty_users` (a share of users who binge in a few short sittings, with more
impressions) and `scenario.item_tail` (the popularity Zipf exponent) shape the log like
real ones; unset, the data are byte-identical to before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.data.synthetic.rules import ColumnRule, build_frame
from pipeline.data.synthetic.scenario import apply_shifts, apply_unit_bug, check_scenario, clip, corrupt
from pipeline.spec.schema import ScenarioSpec

PLATFORMS = ("web", "ios", "android", "tv")
LANGUAGES = ("en", "es", "pt", "hi")
UNDER_EXPOSED_LANGUAGE = "hi"
GENRES = ("drama", "comedy", "documentary", "music", "gaming", "kids", "news", "sports")
AGE_BANDS = ("18-24", "25-34", "35-49", "50+")
LABEL = "clicked"
START = np.datetime64("2024-03-03T00:00:00", "s")
WINDOW_SECONDS = 8 * 7 * 86400
DIM = 8
CLUSTERS = 12
EXPLORE = 0.3  # share of impressions drawn from plain popularity
MAX_POSITION = 30

RULES: dict[str, ColumnRule] = {
    "interaction_id": ColumnRule("int", unique=True),
    "user_id": ColumnRule("int", min=0),
    "item_id": ColumnRule("int", min=0),
    "timestamp": ColumnRule("datetime"),
    "position": ColumnRule("int", 0, 1000),
    "watch_minutes": ColumnRule("float", 0, 600),
    LABEL: ColumnRule("int", allowed=("0", "1")),
    "propensity": ColumnRule("float", 0, 1),
    "platform": ColumnRule("category", allowed=PLATFORMS, invalid="smart_fridge"),
}
Arrays = np.ndarray
SHIFTABLE = frozenset({"position", "watch_minutes", "propensity"})


def generate(rows: int, seed: int, scenario: ScenarioSpec) -> dict[str, pd.DataFrame]:
    """Tables interactions (`rows` impressions, time-ordered), users, items and creators."""
    check_scenario(scenario, RULES, "platform", set(SHIFTABLE))
    rng = np.random.default_rng(seed % 2**64)
    # The defaults tie the catalog to `rows`; scenario.items / scenario.users size it on its own
    # (unset, the draws are exactly the old ones, so existing data stays byte-identical).
    n_users = scenario.users or max(50, rows // 20)
    n_items = scenario.items or max(50, rows // 50)
    creators = _creators(max(10, n_items // 5), rng)
    items, item_cluster, item_factors, popularity = _items(n_items, creators, rng, scenario.item_tail or 0.9)
    users, user_cluster, user_factors, activity = _users(n_users, rng)
    burst_rng = np.random.default_rng([seed % 2**64, 2])  # its own stream: unset, the main draws are unchanged
    bursty = burst_rng.random(n_users) < scenario.bursty_users if scenario.bursty_users > 0 else None
    if bursty is not None:
        activity = activity * np.where(bursty, 3.0, 1.0)  # a binge user watches more, in a few sittings
    columns = _impressions(rows, rng, users, items, user_cluster, item_cluster, popularity, activity)
    if bursty is not None:
        _bursts(columns, bursty, burst_rng)
    relevance = _relevance(columns, users, items, user_factors, item_factors)
    columns[LABEL] = (rng.random(rows) < relevance * _examination(columns["position"])).astype(float)
    duration = items["duration_minutes"].to_numpy()[columns["item_id"].astype(np.int64)]
    watch = np.minimum(duration, rng.lognormal(2.6, 0.8, rows)) * (0.4 + 0.6 * relevance)
    columns["watch_minutes"] = clip(np.where(columns[LABEL] == 1, np.round(watch, 2), 0.0), RULES["watch_minutes"])
    apply_shifts(columns, scenario, RULES, segment=columns["platform"])
    apply_unit_bug(columns, scenario, RULES)
    corrupt_rng = np.random.default_rng([seed % 2**64, 1])
    corrupt(columns, RULES, scenario.corrupt_fraction, corrupt_rng, exclude=frozenset({LABEL}))
    interactions = build_frame(columns, RULES)
    return {
        "interactions": interactions,
        "users": users,
        "items": items,
        "creators": creators,
    }


def _factors(cluster: np.ndarray, centroids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return centroids[cluster] + rng.normal(0.0, 0.5, size=(len(cluster), DIM))


def _centroids() -> np.ndarray:
    """Fixed taste directions, shared by users and items whatever the seed."""
    return np.random.default_rng(12345).normal(0.0, 1.0, size=(CLUSTERS, DIM))


def _creators(n: int, rng: np.random.Generator) -> pd.DataFrame:
    language = rng.choice(len(LANGUAGES), size=n, p=[0.55, 0.2, 0.15, 0.1])
    return pd.DataFrame(
        {
            "creator_id": np.arange(n, dtype=np.int64),
            "language": pd.Categorical.from_codes(language, categories=list(LANGUAGES)),
            "is_new_creator": rng.random(n) < 0.2,
        }
    )


def _items(
    n: int, creators: pd.DataFrame, rng: np.random.Generator, tail: float = 0.9
) -> tuple[pd.DataFrame, Arrays, Arrays, Arrays]:
    creator = rng.integers(0, len(creators), size=n)
    cluster = rng.integers(0, CLUSTERS, size=n)
    factors = _factors(cluster, _centroids(), rng)
    rank = rng.permutation(n) + 1
    popularity = 1.0 / rank**tail  # Zipf-like head and long tail (scenario.item_tail: a steeper head)
    release = START - rng.integers(0, 730 * 86400, size=n).astype("timedelta64[s]")
    duration = np.clip(np.round(rng.lognormal(3.6, 0.6, size=n), 1), 1.0, 600.0)
    items = pd.DataFrame(
        {
            "item_id": np.arange(n, dtype=np.int64),
            "creator_id": creator.astype(np.int64),
            "language": creators["language"].to_numpy()[creator],
            "is_new_creator": creators["is_new_creator"].to_numpy()[creator],  # no new draw: fairness groups
            "genre": pd.Categorical.from_codes(rng.integers(0, len(GENRES), size=n), categories=list(GENRES)),
            "release_date": release.astype("datetime64[ns]"),
            "duration_minutes": duration,
        }
    )
    items["language"] = pd.Categorical(items["language"], categories=list(LANGUAGES))
    return items, cluster, factors, popularity


def _users(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, Arrays, Arrays, Arrays]:
    cluster = rng.integers(0, CLUSTERS, size=n)
    factors = _factors(cluster, _centroids(), rng)
    language = rng.choice(len(LANGUAGES), size=n, p=[0.5, 0.2, 0.15, 0.15])
    is_new = rng.random(n) < 0.15
    old_signup = START - rng.integers(30, 1500, size=n).astype("timedelta64[D]")
    new_signup = START + rng.integers(28 * 86400, WINDOW_SECONDS - 86400, size=n).astype("timedelta64[s]")
    signup = np.where(is_new, new_signup.astype("datetime64[s]"), old_signup.astype("datetime64[s]"))
    activity = rng.lognormal(0.0, 0.7, size=n) * np.where(is_new, 0.1, 1.0)  # new users: few impressions
    users = pd.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "signup_date": signup.astype("datetime64[ns]"),
            "language": pd.Categorical.from_codes(language, categories=list(LANGUAGES)),
            "is_new": is_new,
            "age_band": pd.Categorical.from_codes(rng.integers(0, len(AGE_BANDS), size=n), categories=list(AGE_BANDS)),
            "platform": pd.Categorical.from_codes(
                rng.choice(len(PLATFORMS), size=n, p=[0.3, 0.3, 0.3, 0.1]), categories=list(PLATFORMS)
            ),
        }
    )
    return users, cluster, factors, activity


def _impressions(
    rows: int,
    rng: np.random.Generator,
    users: pd.DataFrame,
    items: pd.DataFrame,
    user_cluster: np.ndarray,
    item_cluster: np.ndarray,
    popularity: np.ndarray,
    activity: np.ndarray,
) -> dict[str, np.ndarray]:
    """Draw (user, item, time, slot, platform) per impression and the policy's exact propensity."""
    user = rng.choice(len(users), size=rows, p=activity / activity.sum())
    exposure = popularity * np.where(items["language"].to_numpy() == UNDER_EXPOSED_LANGUAGE, 0.25, 1.0)
    global_p = exposure / exposure.sum()
    cluster_mass = np.bincount(item_cluster, weights=exposure, minlength=CLUSTERS)
    explore = rng.random(rows) < EXPLORE
    item = _sample(global_p, rng.random(rows))
    for c in range(CLUSTERS):
        pick = ~explore & (user_cluster[user] == c)
        members = np.flatnonzero(item_cluster == c)
        if pick.any() and len(members):
            local = exposure[members] / cluster_mass[c]
            item[pick] = members[_sample(local, rng.random(int(pick.sum())))]
    same = item_cluster[item] == user_cluster[user]
    mass = cluster_mass[user_cluster[user]]
    personal = np.divide(exposure[item], mass, out=np.zeros(rows), where=same & (mass > 0))
    propensity = EXPLORE * global_p[item] + (1 - EXPLORE) * personal
    signup = users["signup_date"].to_numpy().astype("datetime64[s]")[user]
    lower = np.maximum(signup, START)
    span = (START + np.timedelta64(WINDOW_SECONDS, "s") - lower).astype(np.int64)
    ts = lower + (rng.random(rows) * span).astype(np.int64).astype("timedelta64[s]")
    order = np.argsort(ts, kind="stable")
    user_platform = users["platform"].to_numpy().astype(object)[user]
    random_platform = np.asarray(PLATFORMS, dtype=object)[rng.integers(0, len(PLATFORMS), size=rows)]
    platform = np.where(rng.random(rows) < 0.8, user_platform, random_platform)
    position = rng.integers(0, MAX_POSITION, size=rows).astype(float)
    return {
        "interaction_id": np.arange(rows, dtype=float),
        "user_id": user[order].astype(float),
        "item_id": item[order].astype(float),
        "timestamp": ts[order].astype("datetime64[ns]"),
        "position": position,
        "propensity": clip(propensity[order], RULES["propensity"]),
        "platform": platform[order],
    }


BURSTS = 3  # sittings per bursty user
BURST_SECONDS = 3 * 3600  # each sitting lasts up to three hours


def _bursts(columns: dict[str, np.ndarray], bursty: np.ndarray, rng: np.random.Generator) -> None:
    """Move a bursty user's impressions into BURSTS short sittings inside the span they had; keep time order."""
    user = columns["user_id"].astype(np.int64)
    ts = columns["timestamp"].astype("datetime64[s]").astype(np.int64)
    hit = bursty[user]
    if not hit.any():
        return
    n_users = len(bursty)
    lo = np.full(n_users, np.iinfo(np.int64).max)
    hi = np.full(n_users, np.iinfo(np.int64).min)
    np.minimum.at(lo, user[hit], ts[hit])
    np.maximum.at(hi, user[hit], ts[hit])
    starts = lo[:, None] + (rng.random((n_users, BURSTS)) * np.maximum(hi - lo - BURST_SECONDS, 0)[:, None])
    sitting = rng.integers(0, BURSTS, size=int(hit.sum()))
    moved = starts[user[hit], sitting].astype(np.int64) + rng.integers(0, BURST_SECONDS, size=int(hit.sum()))
    ts[hit] = np.minimum(moved, hi[user[hit]])
    order = np.argsort(ts, kind="stable")
    for name in columns:
        if name != "interaction_id":
            columns[name] = columns[name][order]
    columns["timestamp"] = ts[order].astype("datetime64[s]").astype("datetime64[ns]")


def _sample(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: vectorised and exact, unlike per-row rng.choice."""
    cdf = np.cumsum(p)
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(p) - 1)


def _relevance(
    columns: dict[str, np.ndarray],
    users: pd.DataFrame,
    items: pd.DataFrame,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
) -> np.ndarray:
    """Probability of a click once the slot is examined: taste match plus a language match bonus."""
    user = columns["user_id"].astype(np.int64)
    item = columns["item_id"].astype(np.int64)
    affinity = np.einsum("ij,ij->i", user_factors[user], item_factors[item]) / np.sqrt(DIM)
    same_language = users["language"].to_numpy()[user] == items["language"].to_numpy()[item]
    return 1.0 / (1.0 + np.exp(-(-3.2 + 1.4 * affinity + 0.6 * same_language)))


def _examination(position: np.ndarray) -> np.ndarray:
    """Position bias: lower slots are seen less often."""
    return 1.0 / (1.0 + position) ** 0.5
