"""Retraining triggers from the spec: schedule, drift, performance; dedup; an append-only record.

Use from a monitor:

    from pipeline.triggers import DayFacts, evaluate_and_record
    decision = evaluate_and_record(spec, DayFacts(day, psi={...}, metrics={...}, labels_available=True))
    if decision.retrain is not None: ...   # start the retrain (flows/schedule.py: start_retrain)

See docs/adr/0014-triggers-backtest-schedule.md.
"""

from pipeline.triggers.engine import Decision, TriggerEngine, default_drift_features
from pipeline.triggers.facts import DayFacts
from pipeline.triggers.record import evaluate_and_record, read_record, record_not_started, record_path
from pipeline.triggers.rules import Evaluation

__all__ = [
    "DayFacts",
    "Decision",
    "Evaluation",
    "TriggerEngine",
    "default_drift_features",
    "evaluate_and_record",
    "read_record",
    "record_not_started",
    "record_path",
]
