"""Apply a ScenarioSpec's planted problems to generated columns.

Generators draw all their randomness first and then call these deterministic
transforms, so a scenario changes exactly the features it names and nothing else
(corruption uses its own random stream for the same reason).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.data.errors import DataSourceError
from pipeline.data.synthetic.rules import ColumnRule
from pipeline.spec.schema import ScenarioSpec

VIOLATIONS = ("null", "negative", "above_max", "unknown_category", "duplicate_id")


def check_scenario(
    scenario: ScenarioSpec, rules: Mapping[str, ColumnRule], segment_column: str | None, shiftable: set[str]
) -> None:
    """Reject knobs naming columns the generator cannot shift, listing the ones it can."""
    named = [*scenario.drift, *scenario.unit_bug]
    named += [feature for shifts in scenario.segment_shift.values() for feature in shifts]
    unknown = sorted({name for name in named if name not in shiftable})
    if unknown:
        raise DataSourceError(
            f"scenario names unknown or non-numeric feature(s) {', '.join(unknown)}: "
            f"shiftable features are {', '.join(sorted(shiftable))}."
        )
    if scenario.segment_shift:
        allowed = rules[segment_column].allowed if segment_column else ()
        bad = sorted(set(scenario.segment_shift) - set(allowed))
        if bad:
            raise DataSourceError(
                f"scenario segment_shift names unknown segment(s) {', '.join(bad)} of {segment_column}: "
                f"known segments are {', '.join(allowed)}."
            )


def _shift(values: np.ndarray, amount: float, rule: ColumnRule) -> np.ndarray:
    if rule.kind == "int":
        return values + np.round(amount)
    return values + amount


def clip(values: np.ndarray, rule: ColumnRule) -> np.ndarray:
    """Keep a column inside its contract range (and integral for ints)."""
    lo = -np.inf if rule.min is None else rule.min
    hi = np.inf if rule.max is None else rule.max
    out = np.clip(values, lo, hi)
    return np.round(out) if rule.kind == "int" else out


def apply_shifts(
    columns: dict[str, np.ndarray],
    scenario: ScenarioSpec,
    rules: Mapping[str, ColumnRule],
    segment: np.ndarray | None = None,
) -> None:
    """Drift (all rows) and segment shifts (one segment's rows), in standard deviations, in place.

    The standard deviation is the feature's own before any shift, so "+1" means the
    same thing whatever else the scenario does.
    """
    std = {name: float(np.std(columns[name])) for name in _shifted_features(scenario)}
    for name, k in scenario.drift.items():
        columns[name] = clip(_shift(columns[name], k * std[name], rules[name]), rules[name])
    for value, shifts in scenario.segment_shift.items():
        if segment is None:
            continue
        mask = segment == value
        for name, k in shifts.items():
            shifted = clip(_shift(columns[name][mask], k * std[name], rules[name]), rules[name])
            columns[name] = columns[name].copy()
            columns[name][mask] = shifted


def _shifted_features(scenario: ScenarioSpec) -> set[str]:
    return set(scenario.drift) | {f for shifts in scenario.segment_shift.values() for f in shifts}


def apply_unit_bug(columns: dict[str, np.ndarray], scenario: ScenarioSpec, rules: Mapping[str, ColumnRule]) -> None:
    """Scale features by a factor (12 minutes read as 12 seconds: 1/60), clipped so range checks still pass."""
    for name, factor in scenario.unit_bug.items():
        columns[name] = clip(columns[name] * factor, rules[name])


def corrupt(
    columns: dict[str, np.ndarray],
    rules: Mapping[str, ColumnRule],
    fraction: float,
    rng: np.random.Generator,
    exclude: frozenset[str] = frozenset(),
) -> None:
    """Give round(fraction * rows) distinct rows one contract violation each, in place.

    Works on the raw arrays (ints still float, categories object) so that it is vectorised
    and a null in an int column simply becomes NaN. Kinds: a null in a non-nullable numeric
    column, a negative where min is 0, a value above max, an unknown category, a duplicated
    unique id (copied from a clean row, so exactly one row of each pair is the duplicate).
    """
    n = len(next(iter(columns.values())))
    n_bad = round(fraction * n)
    if n_bad == 0:
        return
    candidates = _candidates(rules, exclude)
    kinds = [kind for kind in VIOLATIONS if candidates[kind]]
    rows = np.sort(rng.choice(n, size=n_bad, replace=False))
    kind_of = rng.integers(0, len(kinds), size=n_bad)
    pick = rng.random(n_bad)
    magnitude = rng.uniform(1.0, 100.0, size=n_bad)
    clean = np.ones(n, dtype=bool)
    clean[rows] = False
    clean_rows = np.flatnonzero(clean)
    donors = rng.choice(clean_rows, size=n_bad, replace=len(clean_rows) < n_bad) if len(clean_rows) else rows
    for k, kind in enumerate(kinds):
        names = candidates[kind]
        col_of = np.minimum((pick * len(names)).astype(int), len(names) - 1)
        for c, name in enumerate(names):
            sel = (kind_of == k) & (col_of == c)
            if sel.any():
                columns[name] = _violate(columns[name], rows[sel], kind, rules[name], magnitude[sel], donors[sel])


def _candidates(rules: Mapping[str, ColumnRule], exclude: frozenset[str]) -> dict[str, list[str]]:
    usable = {name: rule for name, rule in rules.items() if name not in exclude}
    return {
        "null": [n for n, r in usable.items() if r.numeric and not r.nullable and not r.unique],
        "negative": [n for n, r in usable.items() if r.numeric and r.min == 0 and not r.unique],
        "above_max": [n for n, r in usable.items() if r.numeric and r.max is not None],
        "unknown_category": [n for n, r in usable.items() if r.kind == "category" and r.allowed],
        "duplicate_id": [n for n, r in usable.items() if r.unique],
    }


def _violate(
    values: np.ndarray, rows: np.ndarray, kind: str, rule: ColumnRule, magnitude: np.ndarray, donors: np.ndarray
) -> np.ndarray:
    out = values.copy()
    if kind == "null":
        out[rows] = np.nan
    elif kind == "negative":
        out[rows] = -np.ceil(magnitude) if rule.kind == "int" else -magnitude
    elif kind == "above_max":
        assert rule.max is not None
        out[rows] = rule.max + (np.ceil(magnitude) if rule.kind == "int" else magnitude)
    elif kind == "unknown_category":
        out[rows] = rule.invalid
    else:
        out[rows] = values[donors]
    return out
