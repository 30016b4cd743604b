"""categorical_values recodes pandas Categoricals through their categories: same result as row by row."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pipeline.models.frame import categorical_values

LEVELS = ["basic", "standard", "premium", "family"]


def row_by_row(column: pd.Series, levels: list[str]) -> tuple[pd.Categorical, int]:
    """The previous implementation: every value mapped to str as a Python object, then encoded."""
    present = column.notna().to_numpy()
    values = column.astype(object).map({c: str(c) for c in column.dtype.categories})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecates unseen values in this constructor
        encoded = pd.Categorical(values.where(present, None), categories=levels)
    return encoded, int(np.count_nonzero((encoded.codes == -1) & present))


CASES = {
    "same categories": (pd.Categorical(["basic", "family", None, "premium"], categories=LEVELS), LEVELS),
    "other order": (pd.Categorical(["basic", "family", "standard"], categories=LEVELS[::-1]), LEVELS),
    "unseen category": (pd.Categorical(["gold", "basic", None, "gold"], categories=["gold", "basic"]), LEVELS),
    "subset, ordered": (pd.Categorical(["family", "basic"], categories=["family", "basic"], ordered=True), LEVELS),
    "numbers vs text levels": (pd.Categorical([1, 2, None, 3]), ["1", "2"]),
    "floats print with .0": (pd.Categorical([1.0, 2.5]), ["1.0", "2.5", "1"]),
    "booleans": (pd.Categorical([True, False, True]), ["True"]),
    "unused categories": (pd.Categorical([None, None], categories=["basic"]), LEVELS),
    "no levels": (pd.Categorical(["basic"]), []),
    "empty column": (pd.Categorical([], categories=["basic"]), LEVELS),
}


@pytest.mark.parametrize("case", CASES)
def test_recoding_matches_the_row_by_row_encoding(case: str) -> None:
    values, levels = CASES[case]
    column = pd.Series(values, index=pd.RangeIndex(5, 5 + len(values)), name="plan_type")
    got, unseen = categorical_values(column, levels, "plan_type")
    want, want_unseen = row_by_row(column, levels)
    assert got.dtype == want.dtype and not got.ordered
    assert list(got.categories) == levels
    np.testing.assert_array_equal(got.codes, want.codes, strict=True)  # same values and code dtype
    assert unseen == want_unseen


def test_a_million_rows_match_too() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 5, 1_000_000)
    column = pd.Series(pd.Categorical.from_codes(codes, categories=["family", "gold", "basic", "standard", "premium"]))
    got, unseen = categorical_values(column, LEVELS, "plan_type")
    want, want_unseen = row_by_row(column, LEVELS)
    np.testing.assert_array_equal(got.codes, want.codes, strict=True)
    assert unseen == want_unseen == int(np.count_nonzero(codes == 1))


@pytest.mark.parametrize("dtype", [object, "string"])
def test_plain_text_with_unseen_values_matches_without_a_pandas_warning(dtype) -> None:
    column = pd.Series(["gold", "basic", None, "family", "gold"], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas 3 deprecates values outside the categories
        got, unseen = categorical_values(column, LEVELS, "plan_type")
    assert list(got.categories) == LEVELS
    assert got.codes.tolist() == [-1, 0, -1, 3, -1]
    assert unseen == 2
