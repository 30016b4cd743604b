"""Models take features by name: missing, extra, mistyped or positional input is refused clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.models import FeatureMismatchError, FeatureTypeError, ModelError
from tests.unit.test_models_fixtures import fitted, xy

FAMILIES = ["lightgbm", "logistic"]


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_and_extra_features_are_named(family):
    x = xy("test")[0].head(5)
    with pytest.raises(FeatureMismatchError, match="missing feature\\(s\\) tenure_months") as info:
        fitted(family).predict_proba(x.drop(columns=["tenure_months"]))
    assert info.value.missing == ["tenure_months"]
    with pytest.raises(FeatureMismatchError, match="unexpected feature\\(s\\) age_band"):
        fitted(family).predict_proba(x.assign(age_band="25-34"))


@pytest.mark.parametrize("family", FAMILIES)
def test_text_in_a_numeric_feature_is_a_type_error_naming_it(family):
    record = xy("test")[0].iloc[0].to_dict()
    with pytest.raises(FeatureTypeError, match=r"'sessions_last_30d' is numeric.*'twelve'"):
        fitted(family).predict_proba({**record, "sessions_last_30d": "twelve"})
    with pytest.raises(FeatureTypeError, match="'monthly_charges' is numeric"):
        fitted(family).predict_proba({**record, "monthly_charges": "12.5"})


@pytest.mark.parametrize("family", FAMILIES)
def test_numbers_in_a_categorical_feature_are_refused(family):
    x = xy("test")[0].head(3).assign(plan_type=[1, 2, 3])
    with pytest.raises(FeatureTypeError, match="'plan_type' is categorical"):
        fitted(family).predict_proba(x)


@pytest.mark.parametrize("family", FAMILIES)
def test_positional_arrays_are_refused(family):
    x = xy("test")[0].head(5)
    with pytest.raises(TypeError, match="by name"):
        fitted(family).predict_proba(x.to_numpy())
    with pytest.raises(TypeError, match="by name"):
        fitted(family).contributions(x.to_numpy())


@pytest.mark.parametrize("family", FAMILIES)
def test_records_columns_and_column_order_all_give_the_same_scores(family):
    model = fitted(family)
    x = xy("test")[0].head(20)
    expected = model.predict_proba(x)
    shuffled = x[list(reversed(x.columns))]
    np.testing.assert_array_equal(model.predict_proba(shuffled), expected)
    columns = {name: x[name].tolist() for name in x.columns}
    np.testing.assert_array_equal(model.predict_proba(columns), expected)
    record = {name: (str(v) if name == "plan_type" else v) for name, v in x.iloc[0].items()}
    one = model.predict_proba(record)
    assert one.shape == (1,)
    assert one[0] == expected[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_values_are_scored(family):
    record = {name: None for name in fitted(family).features}
    p = fitted(family).predict_proba(record)
    assert p.shape == (1,) and 0 < p[0] < 1


def test_mixed_scalars_and_columns_are_refused():
    record = xy("test")[0].iloc[0].to_dict()
    with pytest.raises(FeatureTypeError, match="either one record"):
        fitted("logistic").predict_proba({**record, "tenure_months": [1, 2]})


def test_bad_labels_are_refused():
    x, y = xy("train")
    model = fitted("logistic").__class__(list(x.columns))
    with pytest.raises(ModelError, match="0 or 1"):
        model.fit(x, y * 2)
    with pytest.raises(ModelError, match="shape"):
        model.fit(x, y[:-1])


def test_fit_also_checks_names():
    x, y = xy("train")
    model = fitted("logistic").__class__(list(x.columns))
    with pytest.raises(FeatureMismatchError, match="subscriber_id"):
        model.fit(x.assign(subscriber_id="s"), y)
    with pytest.raises(TypeError, match="by name"):
        model.fit(x.to_numpy(), y)


def test_duplicate_feature_names_are_refused():
    with pytest.raises(ModelError, match="twice"):
        fitted("logistic").__class__(["a", "a"])
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(FeatureMismatchError, match="duplicated"):
        fitted("logistic").__class__(["a"]).fit(frame, np.array([1]))


@pytest.mark.parametrize("family", FAMILIES)
def test_an_all_null_feature_is_refused_by_name(family):
    x, y = xy("train")
    x = x.copy()
    x["tenure_months"] = np.nan
    model = type(fitted(family))(fitted(family).features)  # a fresh, unfitted model of the same family
    with pytest.raises(ModelError, match=r"\['tenure_months'\] are null in every training row"):
        model.fit(x, y)
