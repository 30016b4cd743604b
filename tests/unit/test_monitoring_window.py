"""Rolling-window reference: the current span ends with --as-of, the reference is the window before it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from flows.monitor import split_window
from pipeline.data.errors import DataSourceError
from pipeline.data.synthetic.streamflow import generate
from pipeline.spec.load import load_spec
from pipeline.spec.schema import ScenarioSpec

SPEC = Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml"


def test_window_split_by_timestamp() -> None:
    spec = load_spec(SPEC, ["monitoring.reference=window", "monitoring.current_window=7d"]).spec
    frame = generate(3000, 1, ScenarioSpec())  # weekly snapshots 2024-01-07 .. 2024-03-24
    reference, current = split_window(spec, frame, date(2024, 3, 24))  # current [03-18, 03-25), ref 30 d before
    assert set(pd.to_datetime(current["snapshot_date"]).dt.date) == {date(2024, 3, 24)}
    assert set(pd.to_datetime(reference["snapshot_date"]).dt.date) == {
        date(2024, 2, 18),
        date(2024, 2, 25),
        date(2024, 3, 3),
        date(2024, 3, 10),
        date(2024, 3, 17),
    }
    with pytest.raises(DataSourceError, match="needs the timestamp column 'snapshot_date'"):
        split_window(spec, frame.drop(columns=["snapshot_date"]), date(2024, 3, 24))
