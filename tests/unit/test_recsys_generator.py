"""StreamRec generator options for real-looking logs: bursty users and a long-tailed catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.data.synthetic.streamrec import generate
from pipeline.spec.schema import ScenarioSpec


def _gap_hours(log: pd.DataFrame, users: np.ndarray) -> float:
    part = log[log["user_id"].isin(users)].sort_values(["user_id", "timestamp"])
    gaps = part.groupby("user_id")["timestamp"].diff().dropna().dt.total_seconds() / 3600
    return float(gaps.median())


def test_unset_options_leave_the_data_unchanged() -> None:
    plain = generate(3000, 4, ScenarioSpec(items=200))["interactions"]
    same = generate(3000, 4, ScenarioSpec(items=200, bursty_users=0.0, item_tail=None))["interactions"]
    pd.testing.assert_frame_equal(plain, same)


def test_bursty_users_binge_in_a_few_sittings() -> None:
    log = generate(20000, 4, ScenarioSpec(items=500, users=400, bursty_users=0.3))["interactions"]
    assert log["timestamp"].is_monotonic_increasing
    per_user = log.groupby("user_id")["timestamp"].agg(lambda t: t.dt.floor("3h").nunique())
    sizes = log.groupby("user_id").size()
    bursty = per_user[(per_user <= 6) & (sizes >= 20)].index.to_numpy()  # many impressions, few 3-hour windows
    assert len(bursty) > 50
    assert _gap_hours(log, bursty) < 0.5 * _gap_hours(log, np.setdiff1d(sizes.index, bursty))


def test_item_tail_concentrates_popularity() -> None:
    def head_share(tail: float | None) -> float:
        log = generate(20000, 4, ScenarioSpec(items=1000, item_tail=tail))["interactions"]
        counts = log["item_id"].value_counts()
        return counts.head(10).sum() / counts.sum()

    assert head_share(1.3) > 1.5 * head_share(None)
