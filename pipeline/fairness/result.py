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
    excluded: name -> the groups left out of it for size ({"group", "value", "n"}, point estimates),
    and with_excluded: name -> what it would be with them in at those point estimates (None when
    nothing was left out or fewer than two groups have a value); a gate whose verdict they would
    flip says "insufficient", never "passed" (docs/adr/0027-gates-that-know-their-evidence.md).
    """

    groups: list[GroupMetric] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    insufficient: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    with_excluded: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_metric(
        self, name: str, value: float | None, bounds: tuple[float | None, float | None], why_missing: str = ""
    ) -> None:
        clean = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        self.metrics[name] = clean
        self.intervals[name] = bounds
        if clean is None:
            self.insufficient[name] = why_missing or INSUFFICIENT

    def exclude(
        self, name: str, left_out: list[tuple[str, float | None, int]], values: list[float], higher_is_better: bool
    ) -> None:
        """Record the groups `name` left out (group, point value, n) and its value with them in.

        `values`: every group's point value that enters the metric with them in (sufficient and left out);
        a gap is max - min of them, an equity (higher_is_better) their minimum."""
        self.excluded[name] = [{"group": g, "value": v, "n": n} for g, v, n in left_out]
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        measured = [g for g in left_out if g[1] is not None]
        if not measured:
            self.with_excluded[name] = None
        elif higher_is_better:
            self.with_excluded[name] = min(finite) if finite else None
        else:
            self.with_excluded[name] = max(finite) - min(finite) if len(finite) >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "insufficient": dict(self.insufficient),
            "excluded": {k: list(v) for k, v in self.excluded.items()},
            "with_excluded": dict(self.with_excluded),
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
    _worst_excluded(report, name, names, higher_is_better)


def _worst_excluded(report: FairnessReport, name: str, names: list[str], higher_is_better: bool) -> None:
    """The unqualified metric's left-out groups: every grouping's, and the worst value with them in."""
    left_out = [{**g, "group": f"{_grouping(n)}: {g['group']}"} for n in names for g in report.excluded.get(n, [])]
    if not left_out:
        return
    report.excluded[name] = left_out
    candidates = []
    for n in names:  # with a grouping's left-out groups in, or its own value where it left none out
        value = report.with_excluded.get(n)
        candidates.append(value if value is not None else report.metrics.get(n))
    finite = [v for v in candidates if v is not None]
    report.with_excluded[name] = (min if higher_is_better else max)(finite) if finite else None


def _grouping(name: str) -> str:
    """`tpr_gap[age_band]` -> `age_band`."""
    return name[name.index("[") + 1 : -1] if name.endswith("]") and "[" in name else name
