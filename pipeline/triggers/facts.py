"""The input of every trigger evaluation: one day of monitoring facts.

A plain dataclass so that the daily monitor (flows/monitor.py) and `keel backtest` feed
the same rules: the monitor builds one from its PSI report and metrics history, the
backtest from one row of a recorded history file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True)
class DayFacts:
    """What was observed about one day of serving data.

    psi: feature -> PSI of the day vs the drift reference (missing or NaN: not measured).
    metrics: metric -> value from joined outcomes (e.g. ndcg@10, auc); only meaningful when
    `labels_available` (outcomes arrive late: a day without them measures nothing).
    at: when the facts became known; default the next midnight UTC (a day is complete then).
    """

    date: date
    psi: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    labels_available: bool = True
    at: datetime | None = None

    def observed_at(self) -> datetime:
        if self.at is not None:
            return self.at if self.at.tzinfo else self.at.replace(tzinfo=UTC)
        return datetime.combine(self.date + timedelta(days=1), time(0), tzinfo=UTC)

    def psi_of(self, feature: str) -> float | None:
        return _finite(self.psi.get(feature))

    def metric(self, name: str) -> float | None:
        return _finite(self.metrics.get(name)) if self.labels_available else None


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
