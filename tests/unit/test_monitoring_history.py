"""Metrics history (idempotent per date), performance metrics, and the PNG charts."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from pipeline.monitoring.charts import drift_chart, history_chart
from pipeline.monitoring.drift import FeatureDrift
from pipeline.monitoring.history import binary_metrics, history_rows, ranking_metrics, read_history, write_day

PNG = b"\x89PNG\r\n\x1a\n"


def test_history_is_partitioned_by_date_and_idempotent_per_date(tmp_path: Path) -> None:
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    write_day(tmp_path, d1, history_rows(d1, {"auc": 0.80}, {"x": 0.1}, "b:1", "sha"))
    write_day(tmp_path, d2, history_rows(d2, {"auc": 0.78}, {"x": 0.3}, "b:1", "sha"))
    write_day(tmp_path, d1, history_rows(d1, {"auc": 0.81}, {"x": 0.2}, "b:1", "sha"))  # a rerun of day 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-03-01", "date=2026-03-02"]
    h = read_history(tmp_path)
    assert len(h) == 4
    auc = h[(h["kind"] == "metric") & (h["name"] == "auc")]
    assert list(auc["value"]) == [0.81, 0.78]
    assert read_history(tmp_path / "absent").empty


def test_binary_metrics_from_joined_outcomes() -> None:
    y = np.array([0, 0, 1, 1, np.nan])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    m = binary_metrics(y, p, threshold=0.5, k=2)
    assert m["auc"] == pytest.approx(0.75) and m["outcomes"] == 4 and m["positive_rate"] == 0.5


def test_ctr_and_ndcg_at_k_per_user() -> None:
    group = np.array(["u1", "u1", "u1", "u2", "u2", "u3"])
    y = np.array([0, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.5, 0.1, 0.8, 0.2, 0.7])
    m = ranking_metrics(group, y, s, k=2)
    # u1: the click at rank 2 -> 1/log2(3); u2: the click at rank 1 -> 1; u3 has no click (skipped)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    assert m["ctr"] == pytest.approx(2 / 6)


def test_charts_are_pngs(tmp_path: Path) -> None:
    d = FeatureDrift("x", "numeric", 0.4, "ALERT", 100, 0.0, 0.0, "", ["<= 1", "> 1"], [0.5, 0.5], [0.2, 0.8])
    assert drift_chart(d, tmp_path / "x.png").read_bytes().startswith(PNG)
    day = date(2026, 3, 1)
    write_day(tmp_path / "h", day, history_rows(day, {"auc": 0.8}, {}, None, "sha"))
    assert history_chart(read_history(tmp_path / "h"), tmp_path / "h.png").read_bytes().startswith(PNG)
    assert history_chart(read_history(tmp_path / "none"), tmp_path / "n.png") is None
    no_data = FeatureDrift("y", "numeric", None, "NO_DATA", 0, 1.0, 0.0)
    assert drift_chart(no_data, tmp_path / "y.png") is None
