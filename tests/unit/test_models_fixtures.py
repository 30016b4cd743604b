"""Shared data for the model tests: synthetic StreamFlow with the spec's features, time-split.

Cached so that the model test files share one generated table and one fitted model per family.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.derived import add_derived
from pipeline.data.split import split_frame
from pipeline.data.synthetic.streamflow import generate
from pipeline.models import TabularModel, build_model
from pipeline.spec.load import load_spec
from pipeline.spec.schema import LogisticModel, ScenarioSpec, Spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml"
ROWS = 10_000
SEED = 7


@cache
def churn_spec() -> Spec:
    return load_spec(str(SPEC_PATH)).spec


@cache
def churn_split() -> dict[str, pd.DataFrame]:
    """train/valid/test by time, derived features included (no contract corruption)."""
    spec = churn_spec()
    frame = add_derived(generate(ROWS, SEED, ScenarioSpec()), spec.features.derived)
    return split_frame(frame, spec.data.split, spec.data.timestamp, SEED)


def xy(part: str) -> tuple[pd.DataFrame, np.ndarray]:
    frame = churn_split()[part]
    return frame[churn_spec().model.features], frame[churn_spec().data.label].to_numpy()


@cache
def fitted(family: str) -> TabularModel:
    """The spec's LightGBM model (early stopping on valid) or a default logistic model on the same features."""
    spec = churn_spec()
    model_spec = spec.model if family == "lightgbm" else LogisticModel(family="logistic", features=spec.model.features)
    return build_model(model_spec, seed=SEED).fit(*xy("train"), valid=xy("valid"))


def test_fixture_split_is_time_ordered_and_has_both_classes():
    parts = churn_split()
    assert parts["train"]["snapshot_date"].max() <= parts["test"]["snapshot_date"].min()
    for part in ("train", "valid", "test"):
        assert set(np.unique(xy(part)[1])) == {0, 1}
