"""The three retrain triggers of a spec, each judged on its own (before deduplication).

Each rule returns an `Evaluation` whose status is `fired`, `below_threshold` or `no_data`,
with a reason a person can check against the numbers. Deciding whether a fired signal
actually starts a retrain (min_interval, critical bypass, same-minute merge, waiting for
labels) is the engine's job (pipeline/triggers/engine.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from pipeline.spec.schema import DriftTrigger, PerformanceTrigger, ScheduleTrigger
from pipeline.triggers.facts import DayFacts

MIN_BASELINE_DAYS = 3
"""A relative decline needs a few days of baseline: one noisy day is not a trend."""

STATUSES = ("fired", "suppressed", "merged", "waiting_for_labels", "below_threshold", "no_data")


@dataclass
class Evaluation:
    """One trigger judged at one instant; every one is recorded, fired or not."""

    at: datetime
    trigger: str
    status: str
    reason: str
    critical: bool = False
    approval: bool = False
    value: float | None = None
    threshold: float | None = None
    day: date | None = None
    retrain: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        out["day"] = self.day.isoformat() if self.day else None
        return out


def schedule_signal(trigger: ScheduleTrigger, at: datetime) -> Evaluation:
    reason = f"cron '{trigger.cron}' ({trigger.timezone}) fired"
    return Evaluation(at, "schedule", "fired", reason, approval=trigger.approval)


def drift_signal(trigger: DriftTrigger, default_features: Sequence[str], facts: DayFacts, at: datetime) -> Evaluation:
    """Fired when a key feature's PSI is above psi_above; critical at or above critical_psi."""
    features = list(trigger.features or default_features)
    measured = {f: v for f in features if (v := facts.psi_of(f)) is not None}
    day = facts.date
    if not measured:
        return Evaluation(at, "drift", "no_data", f"no PSI for the key features ({', '.join(features)})", day=day)
    worst, psi = max(measured.items(), key=lambda kv: kv[1])
    above = sorted((f for f, v in measured.items() if v > trigger.psi_above), key=lambda f: -measured[f])
    if not above:
        reason = f"max PSI {psi:.3f} ({worst}) <= {trigger.psi_above:g}"
        return Evaluation(at, "drift", "below_threshold", reason, value=psi, threshold=trigger.psi_above, day=day)
    critical = psi >= trigger.critical_psi
    listed = ", ".join(f"{f} {measured[f]:.3f}" for f in above)
    threshold = trigger.critical_psi if critical else trigger.psi_above
    level = f">= critical {threshold:g}" if critical else f"> {threshold:g}"
    reason = f"PSI {listed} ({level})"
    return Evaluation(at, "drift", "fired", reason, critical, trigger.approval, psi, threshold, day)


def performance_signal(
    trigger: PerformanceTrigger,
    facts: DayFacts,
    baseline: Sequence[float],
    higher_is_better: bool,
    at: datetime,
) -> Evaluation:
    """Below the floor (critical), or a relative decline vs the mean of the baseline window's days."""
    metric, day = trigger.metric, facts.date
    value = facts.metric(metric)
    if value is None:
        why = "no labels yet" if not facts.labels_available else f"{metric} not measured"
        return Evaluation(at, "performance", "no_data", f"{why} for {day}", day=day)
    worse = (lambda a, b: a < b) if higher_is_better else (lambda a, b: a > b)
    if trigger.floor is not None and worse(value, trigger.floor):
        side = "below floor" if higher_is_better else "above ceiling"
        reason = f"{metric} {value:.4f} {side} {trigger.floor:g}"
        return Evaluation(at, "performance", "fired", reason, True, trigger.approval, value, trigger.floor, day)
    if trigger.max_relative_decline is None:
        reason = f"{metric} {value:.4f} within floor {trigger.floor:g}"
        return Evaluation(at, "performance", "below_threshold", reason, value=value, threshold=trigger.floor, day=day)
    if len(baseline) < MIN_BASELINE_DAYS:
        reason = f"{metric} {value:.4f}; baseline has {len(baseline)} day(s), needs {MIN_BASELINE_DAYS}"
        return Evaluation(at, "performance", "below_threshold", reason, value=value, day=day)
    mean = statistics.fmean(baseline)
    drop = (mean - value) if higher_is_better else (value - mean)
    relative = drop / abs(mean) if mean else 0.0
    text = (
        f"{metric} {value:.4f} vs {len(baseline)}-day mean {mean:.4f} ({trigger.baseline_window}): "
        f"decline {relative:.1%}"
    )
    limit = trigger.max_relative_decline
    if relative > limit:
        return Evaluation(
            at, "performance", "fired", f"{text} > {limit:.1%}", False, trigger.approval, value, limit, day
        )
    return Evaluation(
        at, "performance", "below_threshold", f"{text} <= {limit:.1%}", value=value, threshold=limit, day=day
    )
