"""`keel monitor` reads epoch timestamps as `keel run` does (data.timestamp_unit): a rolling window finds its rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from flows.monitor import load_current, split_window
from pipeline.spec.load import load_spec

SPEC = """\
defaults: [{model: lightgbm}, _self_]
name: epoch-table
task: binary_classification
data:
  source: rows.parquet
  label: churn
  timestamp: ts
  timestamp_unit: s
contract:
  name: epoch
  columns:
    x: {dtype: float}
    churn: {dtype: int}
    ts: {dtype: datetime}
model:
  features: [x]
monitoring:
  reference: window
  reference_window: 7d
  current_window: 1d
  current: {source: rows.parquet}
"""


def test_epoch_seconds_become_times_and_the_window_splits_on_them(tmp_path: Path) -> None:
    days = pd.date_range("2026-03-01", periods=10 * 24, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=len(days)),
            "churn": np.arange(len(days)) % 2,
            "ts": (days - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1),
        }
    )
    frame.to_parquet(tmp_path / "rows.parquet", index=False)
    (tmp_path / "epoch.yaml").write_text(SPEC)
    loaded = load_spec(tmp_path / "epoch.yaml")
    for path in (None, tmp_path / "rows.parquet"):  # monitoring.current, and --data FILE
        current = load_current.fn(loaded.spec, loaded.base_dir, path)  # the task body, no Prefect server
        assert pd.api.types.is_datetime64_any_dtype(current["ts"])
        assert current["ts"].min() == pd.Timestamp("2026-03-01")
        reference, today = split_window(loaded.spec, current, date(2026, 3, 10))
        assert (len(reference), len(today)) == (7 * 24, 24)  # as epoch numbers both were empty (1970)
