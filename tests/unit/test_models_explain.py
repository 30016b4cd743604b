"""Top reasons name real features, point the way the data does, and scale to large batches."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pipeline.models.explain import FeatureReference, top_reasons
from tests.unit.test_models_fixtures import fitted, xy

FAMILIES = ["lightgbm", "logistic"]
REASON = re.compile(r"^(\w+) (?:(high|low) \(([-\d.e+]+) vs median ([-\d.e+]+)\)|at median|= (\w+)|missing)")


def _reference() -> FeatureReference:
    x, _ = xy("train")
    return FeatureReference.from_frame(x, list(x.columns))


def test_reference_holds_medians_and_modes_and_round_trips_json():
    reference = _reference()
    train = xy("train")[0]
    assert reference.modes == {"plan_type": str(train["plan_type"].value_counts().idxmax())}
    assert reference.medians["sessions_last_30d"] == float(xy("train")[0]["sessions_last_30d"].median())
    restored = FeatureReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert restored == reference


@pytest.mark.parametrize("family", FAMILIES)
def test_low_sessions_is_a_reason_for_low_session_rows(family):
    x, _ = xy("test")
    low = x[x["sessions_last_30d"] <= 2]
    assert len(low) >= 10
    reasons = top_reasons(fitted(family), low, _reference())
    named = [any(r.startswith("sessions_last_30d low (") for r in row) for row in reasons]
    assert np.mean(named) >= 0.8


@pytest.mark.parametrize("family", FAMILIES)
def test_reasons_name_real_features_in_the_right_direction(family):
    model = fitted(family)
    x, _ = xy("test")
    reference = _reference()
    reasons = top_reasons(model, x, reference, n=3)
    contributions = model.contributions(x)
    assert len(reasons) == len(x)
    for i, row in enumerate(reasons[:500]):
        assert len(row) == min(3, int((contributions[i] > 0).sum()))
        for reason in row:
            match = REASON.match(reason)
            assert match, reason
            name, direction, value, median, level = match.groups()
            assert name in model.features
            if direction == "high":
                assert float(value) > float(median)
            elif direction == "low":
                assert float(value) < float(median)
            elif level is not None:
                assert level == x.iloc[i][name]


def test_reasons_are_ordered_by_contribution_and_only_positive():
    model = fitted("logistic")
    x, _ = xy("test")
    x = x.head(200)
    contributions = model.contributions(x)
    reasons = top_reasons(model, x, _reference(), n=2)
    for i, row in enumerate(reasons):
        expected = [model.features[j] for j in np.argsort(-contributions[i])[:2] if contributions[i, j] > 0]
        assert [r.split(" ")[0] for r in row] == expected


def test_no_positive_contribution_gives_no_reasons():
    model = fitted("logistic")
    x = xy("test")[0].head(3)
    reasons = top_reasons(model, x, _reference(), contributions=-np.ones((3, len(model.features))))
    assert reasons == [[], [], []]
    with pytest.raises(ValueError, match="shape"):
        top_reasons(model, x, _reference(), contributions=np.ones((2, 2)))


def test_unseen_and_missing_values_are_worded():
    model = fitted("logistic")
    x = xy("test")[0].head(2).copy()
    x["plan_type"] = ["student", None]
    contributions = np.zeros((2, len(model.features)))
    contributions[:, model.features.index("plan_type")] = 1.0
    reasons = top_reasons(model, x, _reference(), contributions=contributions)
    assert reasons == [["plan_type = student (not seen in training)"], ["plan_type missing"]]
