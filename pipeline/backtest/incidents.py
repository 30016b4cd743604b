"""History generators for the seed's three incidents, so backtests replay what really happened.

Each returns an `Incident`: the daily history (the columns pipeline/backtest/history.py
reads) and the moments the tests check against: when the incident started and, for the
slow slide, when people noticed it. StreamRec's features and its ndcg@10 metric are used
(the seed's figures were NDCG@20; the values are the seed's: 0.186 -> 0.171).

- trending_release: a title released at 09:00 takes a large share of impressions:
  item_id PSI jumps on the release day (15 of its 24 hours) and fades over three days.
- event_format_change: a client release on a Sunday at 14:00 starts sending watch time in
  seconds: watch_minutes PSI ~1.5 that day and ~3.2 after (the seed's unit bug gave 3.2).
- slow_population_shift: the audience drifts slowly (platform PSI creeps up, never near
  the alert level) and ndcg@10 slides 0.186 -> 0.171 over five weeks, each weekly model
  within 1-2% of the last; people noticed when the fifth model came out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd

START = date(2026, 1, 5)  # a Monday
FEATURES = ("item_id", "watch_minutes", "platform", "position", "user_id")
METRIC = "ndcg@10"
HEALTHY_NDCG = 0.186
SLID_NDCG = 0.171
MODEL_EXTRAS = {"recall@500": 0.55, "hit@10": 0.21}  # healthy: the absolute gates pass throughout


@dataclass(frozen=True)
class Incident:
    name: str
    history: pd.DataFrame
    started_at: datetime
    noticed_by_people: datetime | None
    description: str


def _base(days: int, seed: int) -> tuple[pd.DataFrame, np.random.Generator]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"date": pd.to_datetime([START + timedelta(days=i) for i in range(days)])})
    for feature in FEATURES:
        frame[f"psi.{feature}"] = rng.uniform(0.005, 0.04, days)
    frame[f"metric.{METRIC}"] = HEALTHY_NDCG + rng.normal(0, 0.0005, days)
    frame["labels_available"] = True
    frame[f"model.{METRIC}"] = HEALTHY_NDCG + rng.normal(0, 0.0005, days)
    for name, value in MODEL_EXTRAS.items():
        frame[f"model.{name}"] = value + rng.normal(0, 0.002, days)
    return frame, rng


def _at(day_index: int, hour: int) -> datetime:
    return datetime.combine(START + timedelta(days=day_index), time(hour), tzinfo=UTC)


def trending_release(days: int = 60, release_day: int = 30, seed: int = 1) -> Incident:
    frame, _ = _base(days, seed)
    for offset, psi in enumerate((0.45, 0.38, 0.22, 0.12)):
        if release_day + offset < days:
            frame.loc[release_day + offset, "psi.item_id"] = psi
    released = _at(release_day, 9)
    text = f"trending title released {released:%a %Y-%m-%d %H:%M} UTC; item_id PSI 0.45 that day, fading"
    return Incident("trending_release", frame, released, None, text)


def event_format_change(days: int = 60, change_day: int = 34, seed: int = 2) -> Incident:
    frame, _ = _base(days, seed)
    frame.loc[change_day, "psi.watch_minutes"] = 1.5  # 10 of the day's 24 hours in seconds
    frame.loc[change_day + 1 :, "psi.watch_minutes"] = 3.2
    frame.loc[change_day:, "psi.platform"] = 0.06  # the one client's share of events is unchanged, roughly
    changed = _at(change_day, 14)
    text = f"a client release at {changed:%a %Y-%m-%d %H:%M} UTC sends watch time in seconds (PSI 3.2)"
    return Incident("event_format_change", frame, changed, None, text)


def slow_population_shift(days: int = 77, shift_day: int = 28, seed: int = 3) -> Incident:
    """ndcg@10 of the live model and of each new model slides geometrically: -1.7% a week."""
    frame, rng = _base(days, seed)
    weekly = (SLID_NDCG / HEALTHY_NDCG) ** (1 / 5)  # five weekly models from 0.186 to 0.171
    since = np.clip(np.arange(days) - shift_day, 0, None)
    level = HEALTHY_NDCG * weekly ** (since / 7)
    frame[f"metric.{METRIC}"] = level + rng.normal(0, 0.0005, days)
    frame[f"model.{METRIC}"] = level + rng.normal(0, 0.0002, days)
    frame["psi.platform"] = 0.02 + 0.0008 * since  # creeps to ~0.06 by the end, far below any alert
    started = _at(shift_day, 0)
    noticed = _at(shift_day + 35, 12)  # the fifth weekly model's review
    text = f"population shift from {started:%Y-%m-%d}; ndcg@10 0.186 -> 0.171 by {noticed:%Y-%m-%d} (noticed then)"
    return Incident("slow_population_shift", frame, started, noticed, text)


INCIDENTS = {
    "trending_release": trending_release,
    "event_format_change": event_format_change,
    "slow_population_shift": slow_population_shift,
}
