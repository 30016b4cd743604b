"""Top reasons per row: the features that push a row's churn risk up the most, in words.

Reasons come from the model's per-feature log-odds contributions (tree SHAP for LightGBM,
coef * standardised value for logistic), and are phrased against the training reference
("sessions_last_30d low (3 vs median 14)") so that a retention agent can act on them.
Only positive contributions are reasons: a feature that lowers risk never explains a flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.models.base import TabularModel
from pipeline.models.frame import FrameLike, as_frame, numeric_values


@dataclass
class FeatureReference:
    """Training medians (numeric features) and modes (categorical ones), stored with a model bundle."""

    medians: dict[str, float] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, train: pd.DataFrame, features: list[str]) -> FeatureReference:
        medians: dict[str, float] = {}
        modes: dict[str, str] = {}
        for name in features:
            column = train[name]
            numeric = pd.api.types.is_numeric_dtype(column.dtype) and not isinstance(column.dtype, pd.CategoricalDtype)
            if numeric:
                values = column.to_numpy(dtype=np.float64, na_value=np.nan)
                medians[name] = float(np.nanmedian(values)) if np.isfinite(values).any() else math.nan
            else:
                counts = column.dropna().astype(str).value_counts()
                if len(counts):
                    modes[name] = str(counts.index[0])
        return cls(medians, modes)

    def to_dict(self) -> dict[str, Any]:
        return {"medians": dict(self.medians), "modes": dict(self.modes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureReference:
        return cls(
            {str(k): float(v) for k, v in data.get("medians", {}).items()},
            {str(k): str(v) for k, v in data.get("modes", {}).items()},
        )


def top_reasons(
    model: TabularModel,
    frame: FrameLike,
    reference: FeatureReference,
    n: int = 3,
    contributions: np.ndarray | None = None,
) -> list[list[str]]:
    """Per row, up to `n` reasons ordered by contribution; rows with no risk-raising feature get [].

    Pass `contributions` when they are already computed (e.g. in parallel chunks): for LightGBM
    exact tree SHAP dominates the cost, the ranking and wording here are cheap.
    """
    raw = as_frame(frame, model.features)
    contributions = model.contributions(raw) if contributions is None else np.asarray(contributions, dtype=float)
    if contributions.shape != (len(raw), len(model.features)):
        raise ValueError(f"contributions have shape {contributions.shape}; expected {(len(raw), len(model.features))}.")
    rows, width = contributions.shape
    m = min(n, width)
    if rows == 0 or m <= 0:
        return [[] for _ in range(rows)]
    if m < width:
        chosen = np.argpartition(-contributions, m - 1, axis=1)[:, :m]
    else:
        chosen = np.broadcast_to(np.arange(width), (rows, width)).copy()
    values = np.take_along_axis(contributions, chosen, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    chosen = np.take_along_axis(chosen, order, axis=1)
    positive = np.take_along_axis(values, order, axis=1) > 0
    text = np.full((rows, m), None, dtype=object)
    levels = model.categorical_levels
    for j, name in enumerate(model.features):
        row_index, slot = np.nonzero((chosen == j) & positive)
        if len(row_index) == 0:
            continue
        column = raw[name].iloc[row_index]
        if name in levels:
            text[row_index, slot] = _describe_category(name, column, set(levels[name]))
        else:
            text[row_index, slot] = _describe_number(name, numeric_values(column, name), reference.medians.get(name))
    counts = positive.sum(axis=1)
    reasons = text.tolist()
    for row in np.flatnonzero(counts < m).tolist():
        reasons[row] = reasons[row][: counts[row]]
    return reasons


def _describe_number(name: str, values: np.ndarray, median: float | None) -> np.ndarray:
    """Reasons for one numeric feature; each distinct displayed value is worded once, then broadcast."""
    out = np.empty(len(values), dtype=object)
    missing = np.isnan(values)
    out[missing] = f"{name} missing"
    if median is None or math.isnan(median):
        _broadcast(out, ~missing, values, lambda key: f"{name} = {_fmt(key)}")
        return out
    med = _fmt(median)
    out[values == median] = f"{name} at median ({med})"
    looks_like_median = _display_key(values) == _display_key(np.array([median]))[0]
    for direction, mask in (("high", values > median), ("low", values < median)):
        _broadcast(out, mask, values, lambda key, d=direction: f"{name} {d} ({_fmt(key)} vs median {med})")
        # Where rounding prints the value as the median, show more digits (rare, so row by row).
        for row in np.flatnonzero(mask & looks_like_median):
            shown, shown_median = _distinct(float(values[row]), median, med)
            out[row] = f"{name} {direction} ({shown} vs median {shown_median})"
    return out


def describe_numbers(names: list[str], values: list[float], medians: list[float | None]) -> list[str]:
    """The words top_reasons gives for a few (feature, value, median) triples, without pandas.

    The serving path explains one request at a time: this is _describe_number's logic per item,
    with the display rounding done by the same vectorised `_display_key`, once for all items.
    """
    count = len(names)
    if count == 0:
        return []
    meds = [math.nan if m is None else float(m) for m in medians]
    keys = _display_key(np.array([*values, *meds], dtype=np.float64)).tolist()
    out: list[str] = []
    for i, (name, value, median) in enumerate(zip(names, values, meds, strict=True)):
        if math.isnan(value):
            out.append(f"{name} missing")
        elif math.isnan(median):
            out.append(f"{name} = {_fmt(keys[i])}")
        elif value == median:
            out.append(f"{name} at median ({_fmt(median)})")
        else:
            direction = "high" if value > median else "low"
            med = _fmt(median)
            if keys[i] == keys[count + i]:
                shown, med = _distinct(float(value), median, med)
            else:
                shown = _fmt(keys[i])
            out.append(f"{name} {direction} ({shown} vs median {med})")
    return out


def describe_category(name: str, value: str | None, known: set[str]) -> str:
    """One categorical reason, worded as _describe_category words a column of them."""
    if value is None:
        return f"{name} missing"
    return f"{name} = {value}" if str(value) in known else f"{name} = {value} (not seen in training)"


def _broadcast(out: np.ndarray, mask: np.ndarray, values: np.ndarray, word: Any) -> None:
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return
    keys, inverse = np.unique(_display_key(values[rows]), return_inverse=True)
    worded = np.array([word(float(key)) for key in keys], dtype=object)
    out[rows] = worded[inverse]


def _display_key(values: np.ndarray) -> np.ndarray:
    """Values rounded as _fmt shows them (0 decimals from 100, 1 from 10, else 3 significant digits)."""
    magnitude = np.abs(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        small = 2 - np.floor(np.log10(np.where(magnitude > 0, magnitude, 1.0)))
    decimals = np.where(magnitude >= 100, 0, np.where(magnitude >= 10, 1, small)).astype(int)
    scale = 10.0 ** np.clip(decimals, -300, 300)
    return np.round(values * scale) / scale


def _describe_category(name: str, column: pd.Series, known: set[str]) -> np.ndarray:
    codes, uniques = pd.factorize(column.astype(object))
    worded = np.array(
        [f"{name} = {v}" if str(v) in known else f"{name} = {v} (not seen in training)" for v in uniques] + [None],
        dtype=object,
    )
    out = worded[codes]  # code -1 (missing) picks the trailing None
    out[codes == -1] = f"{name} missing"
    return out


def _distinct(value: float, median: float, median_text: str) -> tuple[str, str]:
    """Value and median as text, with more digits where rounding would print them equal."""
    text = _fmt(value)
    for digits in (4, 6, 10, 17):
        if text != median_text:
            break
        text, median_text = f"{value:.{digits}g}", f"{median:.{digits}g}"
    return text, median_text


def _fmt(value: float) -> str:
    """Whole numbers without decimals, others with three significant digits (no exponent below 1e6)."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:.3g}"
