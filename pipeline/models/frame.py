"""Turning caller input into the model's feature frame, strictly by feature name.

Every model goes through here so that the rules are the same for LightGBM and logistic
models, in training and in serving: features are matched by name (never by position, so
a bare numpy array is refused), numeric features must hold numbers, and categorical
features are mapped onto the category list learned at fit time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.models.errors import FeatureMismatchError, FeatureTypeError

# feature -> None for a numeric feature, or its category list for a categorical one
FeatureKinds = dict[str, list[str] | None]
FrameLike = pd.DataFrame | Mapping[str, Any]


def as_frame(frame: FrameLike, features: list[str]) -> pd.DataFrame:
    """A DataFrame with exactly `features`, in model order; a dict may hold columns or one record."""
    if isinstance(frame, pd.DataFrame):
        df = frame
    elif isinstance(frame, Mapping):
        df = _from_mapping(frame)
    else:
        raise TypeError(
            f"models take features by name: pass a DataFrame or a mapping of feature name -> values, "
            f"not {type(frame).__name__} (a bare array would match features by position)."
        )
    columns = [str(c) for c in df.columns]
    if len(set(columns)) != len(columns):
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        raise FeatureMismatchError([], [f"{c} (duplicated)" for c in duplicated])
    expected = set(features)
    missing = [f for f in features if f not in set(columns)]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        raise FeatureMismatchError(missing, extra)
    out = df.loc[:, features]
    return out.reset_index(drop=True)


def _from_mapping(frame: Mapping[str, Any]) -> pd.DataFrame:
    scalars = {key: np.ndim(value) == 0 for key, value in frame.items()}
    if all(scalars.values()):
        return pd.DataFrame({key: [value] for key, value in frame.items()})
    if any(scalars.values()):
        single = sorted(str(key) for key, scalar in scalars.items() if scalar)
        raise FeatureTypeError(
            f"a mapping must hold either one record (scalars) or columns (sequences); "
            f"feature(s) {', '.join(single)} hold scalars while others hold sequences."
        )
    return pd.DataFrame(dict(frame))


def learn_kinds(train: pd.DataFrame, features: list[str]) -> FeatureKinds:
    """Numeric vs categorical from the training dtypes; categories come from the dtype or the sorted values."""
    kinds: FeatureKinds = {}
    for name in features:
        column = train[name]
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            kinds[name] = list(dict.fromkeys(str(c) for c in dtype.categories))
        elif pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            kinds[name] = None
        elif pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.DatetimeTZDtype):
            raise FeatureTypeError(f"feature {name!r} is a datetime ({dtype}); derive a number from it first.")
        elif pd.api.types.is_string_dtype(dtype) and _all_text(column):
            kinds[name] = sorted({str(v) for v in column.dropna().unique()})
        else:
            numeric_values(column, name)  # raises a clear error when it is neither text nor numbers
            kinds[name] = None
    return kinds


def _all_text(column: pd.Series) -> bool:
    if not pd.api.types.is_object_dtype(column.dtype):
        return True
    return bool(column.dropna().map(lambda v: isinstance(v, str)).all())


def numeric_values(column: pd.Series, name: str) -> np.ndarray:
    """float64 with NaN for missing; text or other objects in a numeric feature are an error."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
    ):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = column.dropna()
    if pd.api.types.is_object_dtype(dtype):
        bad = bad[~bad.map(lambda v: isinstance(v, int | float | np.number) and not isinstance(v, np.datetime64))]
    if len(bad):
        raise FeatureTypeError(
            f"feature {name!r} is numeric but got {len(bad)} non-numeric value(s) (dtype {dtype}), "
            f"e.g. {bad.iloc[0]!r}."
        )
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def categorical_values(column: pd.Series, levels: list[str], name: str) -> tuple[pd.Categorical, int]:
    """The column on the fit-time categories; returns it with the count of unseen (now missing) values."""
    dtype = column.dtype
    numbers = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if numbers and not isinstance(dtype, pd.CategoricalDtype) and not all(_is_number_text(lv) for lv in levels):
        raise FeatureTypeError(
            f"feature {name!r} is categorical (levels {', '.join(levels[:5])}) but got numbers (dtype {dtype})."
        )
    present = column.notna().to_numpy()
    if isinstance(dtype, pd.CategoricalDtype):
        # Recode through the few categories instead of mapping every row as a Python object (~0.4 s per
        # million rows): each category is compared as str(category), exactly as the row-wise path did.
        position = {level: i for i, level in enumerate(levels)}
        lookup = np.array([position.get(str(c), -1) for c in dtype.categories] + [-1], dtype=np.int64)
        codes = lookup[column.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing -1
        encoded = pd.Categorical.from_codes(codes, categories=levels)
        return encoded, int(np.count_nonzero((codes == -1) & present))
    if not pd.api.types.is_object_dtype(dtype) and pd.api.types.is_string_dtype(dtype):
        values = column.astype(object)
    else:
        values = column.astype(object).map(lambda v: v if isinstance(v, str) else str(v))
    # get_indexer gives -1 for unseen values and for missing ones; pd.Categorical(values, categories=...)
    # silently did the same but pandas 3 deprecates values outside the categories (Pandas4Warning).
    codes = pd.Index(levels, dtype=object).get_indexer(values.where(present, None))
    encoded = pd.Categorical.from_codes(codes, categories=levels)
    unseen = int(np.count_nonzero((codes == -1) & present))
    return encoded, unseen


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
