"""A recorded history of daily monitoring facts, read strictly from Parquet.

One row per day. Columns (anything else is refused by name, like an unknown spec key):
  date                 the day (date, timestamp or ISO string); required, unique
  psi.<feature>        that day's PSI of the feature vs the drift reference (NaN: not measured)
  metric.<name>        that day's metric from joined outcomes, e.g. metric.ndcg@10
  labels_available     bool, default true: a day without outcomes measures no metric
  model.<metric>       offline metrics of a model trained at the end of that day (for the gates)

Duplicate days are refused, naming the dates: two different rows for one day would make the
replay depend on row order. Gaps are allowed (a monitor that did not run): the virtual clock
still runs through them, cron triggers still fire, and the timeline lists each gap.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from pipeline.triggers.facts import DayFacts

PREFIXES = ("psi.", "metric.", "model.")


class HistoryError(ValueError):
    """A history file that cannot be replayed; the message names the file, column or dates."""


@dataclass(frozen=True)
class HistoryDay:
    facts: DayFacts
    model: dict[str, float] = field(default_factory=dict)


@dataclass
class History:
    source: str
    days: list[HistoryDay]
    gaps: list[tuple[date, date]]

    @property
    def first(self) -> date:
        return self.days[0].facts.date

    @property
    def last(self) -> date:
        return self.days[-1].facts.date


def read_history(path: Path) -> History:
    if not path.is_file():
        raise HistoryError(f"cannot read history {path}: the file does not exist")
    if path.suffix.lower() != ".parquet":
        raise HistoryError(f"history {path}: expected a .parquet file (one row per day)")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise HistoryError(f"cannot read history {path}: {exc}") from None
    return history_from_frame(frame, str(path))


def history_from_frame(frame: pd.DataFrame, source: str = "<frame>") -> History:
    if "date" not in frame.columns:
        raise HistoryError(f"history {source}: no 'date' column (one row per day)")
    unknown = [c for c in frame.columns if c not in ("date", "labels_available") and not c.startswith(PREFIXES)]
    if unknown:
        raise HistoryError(
            f"history {source}: unknown column(s) {', '.join(map(str, unknown))}: expected date, labels_available, "
            "psi.<feature>, metric.<name>, model.<metric>"
        )
    if frame.empty:
        raise HistoryError(f"history {source}: no rows")
    days = _dates(frame["date"], source)
    dup = days[days.duplicated(keep=False)]
    if len(dup):
        listed = ", ".join(sorted({d.isoformat() for d in dup})[:10])
        raise HistoryError(f"history {source}: duplicate days {listed} (one row per day; merge or drop them)")
    numeric = [c for c in frame.columns if c.startswith(PREFIXES)]
    values = {}
    for column in numeric:
        converted = pd.to_numeric(frame[column], errors="coerce")
        bad = converted.isna() & frame[column].notna()
        if bad.any():
            raise HistoryError(
                f"history {source}: column {column} holds non-numbers (e.g. {frame[column][bad].iloc[0]!r})"
            )
        values[column] = converted.to_numpy(dtype="float64")
    labels = frame["labels_available"] if "labels_available" in frame.columns else pd.Series(True, index=frame.index)
    if labels.isna().any():
        raise HistoryError(f"history {source}: labels_available has empty values (true or false per day)")
    order = sorted(range(len(frame)), key=lambda i: days.iloc[i])
    rows = [_day(i, days.iloc[i], bool(labels.iloc[i]), values) for i in order]
    return History(source, rows, _gaps([r.facts.date for r in rows]))


def _dates(column: pd.Series, source: str) -> pd.Series:
    parsed = pd.to_datetime(column, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        raise HistoryError(f"history {source}: row {int(bad.to_numpy().nonzero()[0][0])} has no valid date")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.dt.date


def _day(i: int, day: date, labels: bool, values: dict[str, object]) -> HistoryDay:
    psi, metrics, model = {}, {}, {}
    for column, array in values.items():
        value = float(array[i])  # type: ignore[index]
        if math.isnan(value):
            continue
        prefix, name = column.split(".", 1)
        {"psi": psi, "metric": metrics, "model": model}[prefix][name] = value
    return HistoryDay(DayFacts(day, psi, metrics, labels), model)


def _gaps(days: list[date]) -> list[tuple[date, date]]:
    """Missing day ranges (first missing, last missing) between consecutive recorded days."""
    return [(a + timedelta(days=1), b - timedelta(days=1)) for a, b in itertools.pairwise(days) if (b - a).days > 1]
