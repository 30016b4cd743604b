"""What a fairness evaluation returns: one row per (grouping, group, metric), the gaps, and the
scalar metrics gates read by name, with the ones that lacked data named and explained."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

INSUFFICIENT = "insufficient data"
OK = "ok"


@dataclass(frozen=True)
class GroupMetric:
    """One group's value of one metric, its sample size (the metric's own denominator) and interval."""

    grouping: str
    group: str
    metric: str
    value: float | None
    low: float | None
    high: float | None
    n: int
    status: str  # OK or INSUFFICIENT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FairnessReport:
    """Per-group rows plus gate-able scalars.

    metrics: name -> value (None when undefined); the unqualified name (`tpr_gap`) is the worst
    over all groupings, `tpr_gap[age_band]` one grouping's. intervals: name -> (low, high).
    insufficient: name -> why it has no value (too few sufficient groups).
    """

    groups: list[GroupMetric] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    insufficient: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_metric(
        self, name: str, value: float | None, bounds: tuple[float | None, float | None], why_missing: str = ""
    ) -> None:
        clean = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        self.metrics[name] = clean
        self.intervals[name] = bounds
        if clean is None:
            self.insufficient[name] = why_missing or INSUFFICIENT

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "insufficient": dict(self.insufficient),
            "groups": [g.to_dict() for g in self.groups],
            **self.extra,
        }


def short_groups(pairs: list[tuple[str, int]], limit: int = 5) -> str:
    """'a (n=3), b (n=9) and 4 more': which groups were too small, without a wall of text."""
    shown = ", ".join(f"{g} (n={n})" for g, n in pairs[:limit]) or "none"
    return shown + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")


def worst_of(report: FairnessReport, name: str, names: list[str], higher_is_better: bool) -> None:
    """The unqualified metric: the worst qualified value (a gate on it covers every grouping)."""
    values = [(report.metrics[n], n) for n in names if report.metrics.get(n) is not None]
    if not values:
        reason = f"{INSUFFICIENT} in every grouping ({', '.join(names)})" if names else "no groups declared"
        report.add_metric(name, None, (None, None), reason)
        return
    value, source = (min if higher_is_better else max)(values)
    report.add_metric(name, value, report.intervals[source])
    report.extra.setdefault("worst_grouping", {})[name] = source
