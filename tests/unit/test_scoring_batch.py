"""The weekly high-risk list: same entities, order, probabilities and reasons as scoring row by row would give."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.derived import add_derived
from pipeline.data.synthetic.streamflow import generate
from pipeline.models.explain import FeatureReference, top_reasons
from pipeline.registry.tabular import TabularBundle
from pipeline.scoring.batch import HighRiskList, latest_snapshot, score_high_risk
from pipeline.spec.schema import ScenarioSpec
from tests.unit.test_models_fixtures import churn_spec, fitted, xy

ENTITY = "subscriber_id"
THRESHOLD = 0.2


@cache
def bundle(family: str = "lightgbm") -> TabularBundle:
    spec = churn_spec()
    x, _ = xy("train")
    model = fitted(family)
    return TabularBundle(
        tag="streamflow-churn:test",
        model=model,
        contract=spec.contract,
        derived=dict(spec.features.derived),
        reference=FeatureReference.from_frame(x, model.features),
        metrics={},
        threshold=THRESHOLD,
    )


@cache
def raw_frame() -> pd.DataFrame:
    """Fresh subscribers (not the training seed), base columns only, with a non-default index."""
    frame = generate(3000, 21, ScenarioSpec())
    return frame.set_axis(pd.RangeIndex(10_000, 10_000 + len(frame)))


def expected(b: TabularBundle, frame: pd.DataFrame, top_k: int | None = None) -> pd.DataFrame:
    """The listing spelled out step by step: derive, predict, rank, explain the listed rows only."""
    features = add_derived(frame, b.derived)[b.model.features]
    probability = b.model.predict_proba(features)
    order = np.argsort(-probability, kind="stable")
    chosen = order[:top_k] if top_k else order[probability[order] >= THRESHOLD]
    return pd.DataFrame(
        {
            ENTITY: frame[ENTITY].astype("string").to_numpy()[chosen],
            "probability": probability[chosen],
            "rank": np.arange(1, len(chosen) + 1),
            "reasons": top_reasons(b.model, features.iloc[chosen], b.reference, n=3),
            "bundle": b.tag,
        }
    )


@pytest.mark.parametrize("family", ["lightgbm", "logistic"])
@pytest.mark.parametrize("top_k", [None, 25])
def test_listing_matches_the_step_by_step_listing(family: str, top_k: int | None) -> None:
    b = bundle(family)
    listing = score_high_risk(b, raw_frame(), ENTITY, THRESHOLD, top_k=top_k)
    want = expected(b, raw_frame(), top_k)
    assert 0 < len(listing.frame) < len(raw_frame())
    assert listing.scored == len(raw_frame())
    pd.testing.assert_frame_equal(listing.frame, want)
    assert all(1 <= len(r) <= 3 for r in listing.frame["reasons"])


def test_reasons_zero_skips_explaining_but_lists_the_same_entities() -> None:
    b = bundle()
    full = score_high_risk(b, raw_frame(), ENTITY, THRESHOLD)
    bare = score_high_risk(b, raw_frame(), ENTITY, THRESHOLD, reasons=0)
    pd.testing.assert_frame_equal(bare.frame.drop(columns="reasons"), full.frame.drop(columns="reasons"))
    assert bare.frame["reasons"].map(len).eq(0).all()
    one = score_high_risk(b, raw_frame(), ENTITY, THRESHOLD, reasons=1)
    assert one.frame["reasons"].tolist() == [r[:1] for r in full.frame["reasons"]]


def test_listing_with_nobody_above_the_threshold_is_empty_and_writes(tmp_path: Path) -> None:
    listing = score_high_risk(bundle(), raw_frame(), ENTITY, 1.01)
    assert len(listing.frame) == 0 and listing.scored == len(raw_frame())
    assert list(listing.frame.columns) == [ENTITY, "probability", "rank", "reasons", "bundle"]
    outputs = listing.write(tmp_path)
    assert pd.read_parquet(outputs["high_risk_parquet"]).empty


def test_write_joins_reasons_in_the_csv_and_keeps_lists_in_parquet(tmp_path: Path) -> None:
    listing = score_high_risk(bundle(), raw_frame().head(400), ENTITY, THRESHOLD)
    outputs = HighRiskList(listing.frame, listing.scored).write(tmp_path)
    parquet = pd.read_parquet(outputs["high_risk_parquet"])
    csv = pd.read_csv(outputs["high_risk_csv"])
    assert [list(r) for r in parquet["reasons"]] == listing.frame["reasons"].tolist()
    assert csv["reasons"].tolist() == listing.frame["reasons"].map("; ".join).tolist()


def test_latest_snapshot_keeps_each_entity_once_at_its_latest_date() -> None:
    frame = pd.DataFrame(
        {
            ENTITY: ["a", "b", "a", "c", "b"],
            "snapshot_date": pd.to_datetime(["2024-02-01", "2024-01-01", "2024-01-01", "2024-01-08", "2024-03-01"]),
            "x": [1, 2, 3, 4, 5],
        }
    )
    latest = latest_snapshot(frame, ENTITY, "snapshot_date").set_index(ENTITY)["x"].to_dict()
    assert latest == {"a": 1, "b": 5, "c": 4}
