"""Derived features declared in a spec: checking, computing and tracing them to base columns.

A derived feature records its inputs so that drift alerts on, say, engagement_intensity
and sessions_last_30d can be reported as one underlying shift (see derived_lineage).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.spec.expressions import FUNCTIONS, Expression, ExpressionError, parse_expression, unknown_column
from pipeline.spec.schema import DerivedFeature

__all__ = [
    "FUNCTIONS",
    "Expression",
    "ExpressionError",
    "add_derived",
    "derived_lineage",
    "parse_expression",
]


def add_derived(df: pd.DataFrame, derived: Mapping[str, DerivedFeature]) -> pd.DataFrame:
    """Return a copy of `df` with each derived feature appended, in declaration order.

    A feature may use base columns and features declared before it.
    """
    out = df.copy()
    for name, feature in derived.items():
        expression = _parse_for(name, feature.expr)
        for column in sorted(expression.inputs):
            if column not in out.columns:
                raise ExpressionError(f"derived feature {name!r}: {unknown_column(column, out.columns)}")
        arrays = {column: _as_float(out[column], name) for column in expression.inputs}
        # A constant expression reads no column; the "" key (never a column name) gives it the row count.
        values = expression.evaluate(arrays or {"": np.empty(len(out))})
        out[name] = pd.Series(values, index=out.index, dtype="float64")
    return out


def _parse_for(name: str, expr: str) -> Expression:
    try:
        return parse_expression(expr)
    except ExpressionError as exc:
        raise ExpressionError(f"derived feature {name!r}: {exc}") from None


def _as_float(series: pd.Series, feature: str) -> np.ndarray:
    """Nullable and bool columns become float64 with NaN for missing values."""
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise ExpressionError(
            f"derived feature {feature!r} uses column {series.name!r} of dtype {series.dtype}, which is not numeric."
        )
    try:
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise ExpressionError(
            f"derived feature {feature!r} uses column {series.name!r} of dtype {series.dtype}, which is not numeric."
        ) from None


def derived_lineage(derived: Mapping[str, DerivedFeature]) -> dict[str, list[str]]:
    """Map each derived feature to the base columns it ultimately reads (sorted)."""
    direct = {name: _parse_for(name, feature.expr).inputs for name, feature in derived.items()}
    lineage: dict[str, list[str]] = {}
    for name in derived:
        base: set[str] = set()
        seen = {name}
        stack = list(direct[name])
        while stack:
            column = stack.pop()
            if column in direct and column not in seen:
                seen.add(column)
                stack.extend(direct[column])
            elif column not in direct:
                base.add(column)
        lineage[name] = sorted(base)
    return lineage
