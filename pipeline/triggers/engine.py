"""Signals -> at most one retrain: min_interval dedup, critical bypass, same-minute merge, label waits.

The engine is pure state + clock-free logic: the caller says what time it is (the live
monitor: now; the backtest: its virtual clock), so a year replays in well under a second.
Its whole state (last retrain, the performance metric per day, a drift held for labels)
can be rebuilt from the evaluations it produced, which is how the live record resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pipeline.spec.catalog import metric_info
from pipeline.spec.schema import Spec, TriggersSpec
from pipeline.spec.types import parse_duration
from pipeline.triggers.facts import DayFacts
from pipeline.triggers.rules import Evaluation, drift_signal, performance_signal, schedule_signal

NOT_STARTED = "not_started"  # a record line: retrain #n was decided but never started (it does not count)


@dataclass
class Decision:
    """What one evaluation instant decided: a retrain or not, and every trigger's evaluation."""

    at: datetime
    retrain: int | None
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def fired(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.status == "fired"]

    @property
    def approval(self) -> bool:
        """The resulting model needs a human approval before canary (any firing trigger asks for it)."""
        return any(e.approval for e in self.fired)

    @property
    def critical(self) -> bool:
        return any(e.critical for e in self.fired)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "retrain": self.retrain,
            "triggers": [e.trigger for e in self.fired],
            "approval": self.approval,
            "critical": self.critical,
            "evaluations": [e.to_dict() for e in self.evaluations],
        }


def default_drift_features(spec: Spec) -> list[str]:
    """All features the model takes (item features too) when drift.features is empty."""
    return [*spec.model.features, *getattr(spec.model, "item_features", [])]


class TriggerEngine:
    """A spec's triggers with their memory. Feed it instants in time order."""

    def __init__(self, triggers: TriggersSpec, drift_features: Sequence[str], task: str) -> None:
        self.triggers = triggers
        self.drift_features = list(drift_features)
        self.min_interval = parse_duration(triggers.min_interval)
        perf = triggers.performance
        info = metric_info(perf.metric, task) if perf else None
        self.higher_is_better = info.higher_is_better if info else True
        self.window = parse_duration(perf.baseline_window) if perf else timedelta(0)
        self.last_retrain: datetime | None = None
        self.retrains = 0
        self.metric_by_day: dict[date, float] = {}
        self.held: Evaluation | None = None  # a drift waiting for labels
        self.latched: dict[str, Evaluation] = {}  # trigger -> the firing that started a retrain (rearm)

    @classmethod
    def for_spec(cls, spec: Spec) -> TriggerEngine:
        return cls(spec.triggers, default_drift_features(spec), spec.task)

    # ------------------------------------------------------------ inputs

    def on_schedule(self, at: datetime) -> Decision:
        """A cron firing of triggers.schedule (the caller knows it is one)."""
        if self.triggers.schedule is None:
            return Decision(at, None, [])
        return self._decide(at, [schedule_signal(self.triggers.schedule, at)])

    def on_facts(self, facts: DayFacts, at: datetime | None = None) -> Decision:
        """A day's monitoring facts: drift and performance triggers (and a drift held for labels)."""
        return self.evaluate(at or facts.observed_at(), facts)

    def evaluate(self, at: datetime, facts: DayFacts | None = None, scheduled: bool = False) -> Decision:
        """Everything due at one instant together: two triggers in the same minute start one retrain."""
        signals = [schedule_signal(self.triggers.schedule, at)] if scheduled and self.triggers.schedule else []
        if facts is not None and self.triggers.drift is not None:
            signals.append(self._drift(facts, at))
        if facts is not None and self.triggers.performance is not None:
            signals.append(self._performance(facts, at))
        if self.triggers.rearm:
            self._hold_latched(signals)
        return self._decide(at, signals)

    def _hold_latched(self, signals: list[Evaluation]) -> None:
        """A condition that already started a retrain does not start another until it clears (or turns critical)."""
        for e in signals:
            latched = self.latched.get(e.trigger)
            if latched is None:
                continue
            if e.status == "below_threshold":
                del self.latched[e.trigger]
                e.reason += "; cleared: the trigger re-arms"
            elif e.status == "fired" and not (e.critical and not latched.critical):
                e.status, e.retrain = "suppressed", latched.retrain
                e.reason += (
                    f"; still the condition that started retrain #{latched.retrain} at {latched.at:%Y-%m-%d %H:%M}: "
                    "fires again once it clears (triggers.rearm)"
                )

    # ------------------------------------------------------------ rules with memory

    def _drift(self, facts: DayFacts, at: datetime) -> Evaluation:
        drift = self.triggers.drift
        assert drift is not None
        signal = drift_signal(drift, self.drift_features, facts, at)
        if signal.status == "fired" and not signal.critical and drift.wait_for_labels and not facts.labels_available:
            signal.status = "waiting_for_labels"
            signal.reason += "; held until the day's labels are in (drift.wait_for_labels)"
            self.held = signal
        elif signal.status != "fired" and self.held is not None and facts.labels_available:
            held = self.held
            signal = Evaluation(
                at,
                "drift",
                "fired",
                f"held drift of {held.day}: {held.reason.split(';')[0]}; labels now in",
                False,
                held.approval,
                held.value,
                held.threshold,
                facts.date,
            )
        return signal

    def _performance(self, facts: DayFacts, at: datetime) -> Evaluation:
        perf = self.triggers.performance
        assert perf is not None
        start = facts.date - self.window
        baseline = [v for d, v in self.metric_by_day.items() if start <= d < facts.date]
        signal = performance_signal(perf, facts, baseline, self.higher_is_better, at)
        if signal.value is not None:
            self.metric_by_day[facts.date] = signal.value
            self._forget_before(start)
        return signal

    def _forget_before(self, start: date) -> None:
        if len(self.metric_by_day) > 4 * max(self.window.days, 1) + 8:
            self.metric_by_day = {d: v for d, v in self.metric_by_day.items() if d >= start}

    # ------------------------------------------------------------ the decision

    def _decide(self, at: datetime, signals: list[Evaluation]) -> Decision:
        fired = [e for e in signals if e.status == "fired"]
        if not fired:
            return Decision(at, None, signals)
        last = self.last_retrain
        if last is not None and at.replace(second=0, microsecond=0) == last.replace(second=0, microsecond=0):
            for e in fired:
                e.status, e.retrain = "merged", self.retrains
                self._latch(e)
                e.reason += f"; joins retrain #{self.retrains} started this minute ({last:%Y-%m-%d %H:%M})"
            return Decision(at, None, signals)
        if last is not None and at - last < self.min_interval:
            critical = [e for e in fired if e.critical]
            if not critical:
                for e in fired:
                    e.status = "suppressed"
                    e.reason += (
                        f"; dedup: retrain #{self.retrains} at {last:%Y-%m-%d %H:%M} was {_ago(at - last)} ago "
                        f"< min_interval {self.triggers.min_interval}"
                    )
                return Decision(at, None, signals)
            for e in critical:
                e.reason += f"; critical: bypasses the {self.triggers.min_interval} dedup window"
        self.retrains += 1
        self.last_retrain = at
        self.held = None
        for e in fired:
            e.retrain = self.retrains
            self._latch(e)
        return Decision(at, self.retrains, signals)

    def _latch(self, e: Evaluation) -> None:
        if e.trigger != "schedule":
            self.latched[e.trigger] = e

    # ------------------------------------------------------------ resuming from a record

    def restore(self, records: Iterable[dict[str, Any]]) -> None:
        """Rebuild the state from earlier evaluations (the JSONL record's lines, oldest first).

        A retrain that was decided but never started (a `not_started` line: the monitor ran without
        --retrain, or starting it failed) does not count for dedup or rearm: only retrains that ran do.
        """
        records = list(records)
        cancelled = {int(r["retrain"]) for r in records if r.get("status") == NOT_STARTED and r.get("retrain")}
        for r in records:
            at = datetime.fromisoformat(r["at"])
            if r.get("retrain") and int(r["retrain"]) in cancelled:
                self.retrains = max(self.retrains, int(r["retrain"]))
                continue
            if r.get("status") == "fired" and r.get("retrain"):
                if self.last_retrain is None or at >= self.last_retrain:
                    self.last_retrain, self.held = at, None
                self.retrains = max(self.retrains, int(r["retrain"]))
            if r.get("trigger") in ("drift", "performance") and r.get("status") in ("fired", "merged"):
                self.latched[r["trigger"]] = _evaluation(r, at)
            elif r.get("trigger") in self.latched and r.get("status") == "below_threshold":
                del self.latched[r["trigger"]]
            if r.get("trigger") == "performance" and r.get("value") is not None and r.get("day"):
                self.metric_by_day[date.fromisoformat(r["day"])] = float(r["value"])
            if r.get("status") == "waiting_for_labels":
                self.held = _evaluation(r, at)


def _evaluation(r: dict[str, Any], at: datetime) -> Evaluation:
    """A recorded evaluation line back as an Evaluation (for the engine's memory)."""
    day = date.fromisoformat(r["day"]) if r.get("day") else None
    return Evaluation(
        at,
        r["trigger"],
        r["status"],
        r.get("reason", ""),
        bool(r.get("critical")),
        bool(r.get("approval")),
        r.get("value"),
        r.get("threshold"),
        day,
        r.get("retrain"),
    )


def _ago(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"
