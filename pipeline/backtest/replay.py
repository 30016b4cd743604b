"""Replay a recorded history through a spec's triggers and gates on a virtual clock.

The clock visits, in time order, every cron firing of `triggers.schedule` and every
moment a day's facts became known (the first `triggers.monitor` run after the day ended;
without a monitor schedule, midnight UTC). Instants in the same minute are evaluated
together, so two triggers firing together start one retrain. Each retrain's challenger is
the model recorded for the last complete day (`model.*` columns); the spec's gates judge
it against the replay's own champion and promoted history. Facts are replayed as recorded:
a retrain does not change later days (no counterfactual), which is what lets two specs be
compared on the same history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from pipeline.backtest.history import History, HistoryDay
from pipeline.gates.evaluate import evaluate_gates
from pipeline.spec.schema import Spec
from pipeline.triggers.cron import fire_times, next_fire
from pipeline.triggers.engine import Decision, TriggerEngine
from pipeline.triggers.rules import Evaluation

SHOWN = ("fired", "suppressed", "merged", "waiting_for_labels")


@dataclass
class ModelVerdict:
    """The gates' verdict on one retrain's challenger."""

    retrain: int
    at: datetime
    trained_on: str | None
    passed: bool | None  # None: no model metrics recorded for that day
    promoted: bool
    approval: bool  # the model waits for a human approval before canary (assumed given in the replay)
    failed: list[str] = field(default_factory=list)
    skipped_gates: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass
class Timeline:
    spec_name: str
    source: str
    start: datetime
    end: datetime
    evaluations: list[Evaluation]
    models: list[ModelVerdict]
    gaps: list[tuple[str, str]]
    initial_champion: dict[str, float] | None

    def shown(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.status in SHOWN]

    def summary(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for e in self.evaluations:
            counts.setdefault(e.trigger, {}).setdefault(e.status, 0)
            counts[e.trigger][e.status] += 1
        first = {}
        for e in self.evaluations:
            if e.status == "fired":
                first.setdefault(e.trigger, e.at.isoformat())
        return {
            "retrains": len(self.models),
            "promoted": sum(m.promoted for m in self.models),
            "rejected": sum(m.passed is False for m in self.models),
            "first_fired": first,
            "by_trigger": counts,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec_name,
            "history": self.source,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "summary": self.summary(),
            "gaps": [{"from": a, "to": b} for a, b in self.gaps],
            "initial_champion": self.initial_champion,
            "evaluations": [e.to_dict() for e in self.evaluations],
            "models": [m.to_dict() for m in self.models],
        }


def _midnight(day) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _fact_times(spec: Spec, history: History) -> dict[datetime, HistoryDay]:
    monitor = spec.triggers.monitor
    out: dict[datetime, HistoryDay] = {}
    for day in history.days:
        end = _midnight(day.facts.date + timedelta(days=1))
        at = next_fire(monitor.cron, monitor.timezone, end - timedelta(microseconds=1)) if monitor else end
        out[at.replace(second=0, microsecond=0)] = day
    return out


def backtest(spec: Spec, history: History) -> Timeline:
    """The timeline of what the spec's triggers and gates would have done over `history`."""
    engine = TriggerEngine.for_spec(spec)
    facts_at = _fact_times(spec, history)
    start = _midnight(history.first)
    end = max(facts_at) if facts_at else _midnight(history.last + timedelta(days=1))
    schedule = spec.triggers.schedule
    cron_at = set()
    if schedule is not None:
        cron_at = {t.replace(second=0, microsecond=0) for t in fire_times(schedule.cron, schedule.timezone, start, end)}
    models = Models(spec, history)
    evaluations: list[Evaluation] = []
    for at in sorted(set(facts_at) | cron_at):
        day = facts_at.get(at)
        decision = engine.evaluate(at, day.facts if day else None, scheduled=at in cron_at)
        evaluations += decision.evaluations
        if decision.retrain is not None:
            models.judge(decision)
    gaps = [(a.isoformat(), b.isoformat()) for a, b in history.gaps]
    return Timeline(spec.name, history.source, start, end, evaluations, models.verdicts, gaps, models.initial)


class Models:
    """The replay's registry: the champion and the promoted history the gates compare with."""

    def __init__(self, spec: Spec, history: History) -> None:
        self.spec = spec
        self.by_day = {d.facts.date: d.model for d in history.days if d.model}
        first = next(iter(self.by_day.values()), None)
        self.initial = dict(first) if first else None
        self.promoted: list[Mapping[str, float]] = [first] if first else []  # newest first
        self.verdicts: list[ModelVerdict] = []

    def _challenger(self, at: datetime) -> tuple[str | None, dict[str, float]]:
        """The model recorded for the last complete day before `at` (training uses data up to then)."""
        done = [d for d in self.by_day if _midnight(d + timedelta(days=1)) <= at]
        if not done:
            return None, {}
        day = max(done)
        return day.isoformat(), dict(self.by_day[day])

    def judge(self, decision: Decision) -> None:
        """Gate the retrain's challenger; a passed one becomes champion (after its approval, if asked)."""
        retrain = decision.retrain
        assert retrain is not None
        trained_on, metrics = self._challenger(decision.at)
        if not metrics:
            self.verdicts.append(ModelVerdict(retrain, decision.at, trained_on, None, False, decision.approval))
            return
        gates = {n: g for n, g in self.spec.gates.items() if (g.metric or n) in metrics}
        skipped = [n for n in self.spec.gates if n not in gates]
        if not gates:  # none of the spec's gate metrics was recorded: no verdict, rather than a vacuous pass
            self.verdicts.append(
                ModelVerdict(retrain, decision.at, trained_on, None, False, decision.approval, [], skipped, metrics)
            )
            return
        champion = self.promoted[0] if self.promoted else None
        report = evaluate_gates(gates, metrics, self.spec.task, champion, history=self.promoted)
        failed = [f"{r.name}: {r.reason}" for r in report.results if not r.passed and r.blocking]
        if report.passed:
            self.promoted.insert(0, metrics)
        self.verdicts.append(
            ModelVerdict(
                retrain,
                decision.at,
                trained_on,
                report.passed,
                report.passed,
                decision.approval,
                failed,
                skipped,
                metrics,
            )
        )
