"""What the spec prescribes for a monitored day: the spec's triggers decide, the monitor supplies facts.

The day's PSI and metrics become a `DayFacts`, and `TriggerEngine` (pipeline/triggers)
applies the drift and performance rules (approval, wait for labels, critical levels) with the
memory of the spec's trigger record (`runs/<name>/triggers.jsonl`): a retrain inside
min_interval is deduplicated there, and every evaluation is appended to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.monitoring.drift import MISSING, NO_DATA
from pipeline.monitoring.report import MonitorReport
from pipeline.spec.schema import Spec
from pipeline.triggers import DayFacts, Decision, evaluate_and_record


def decide(spec: Spec, report: MonitorReport, record: Path | None = None) -> tuple[dict[str, Any], Decision]:
    """Evaluate the spec's triggers on the day's facts through the trigger record (dedup memory)."""
    facts = DayFacts(report.as_of, report.psi(), report.metrics, labels_available=bool(report.metrics))
    decision = evaluate_and_record(spec, facts, path=record, source="monitor")
    return summarise(decision, report), decision


def summarise(decision: Decision, report: MonitorReport) -> dict[str, Any]:
    fired = [e for e in decision.evaluations if e.status == "fired"]
    held = [e for e in decision.evaluations if e.status == "waiting_for_labels"]
    deduped = [e for e in decision.evaluations if e.status in ("suppressed", "merged")]
    broken = [n for n, d in report.features.items() if d.level in (MISSING, NO_DATA)]
    if fired and decision.retrain is not None:
        names = ", ".join(e.trigger for e in fired)
        gate = "human approval before canary" if decision.approval else "no approval needed"
        summary = f"retrain: {names} trigger fired{' (critical)' if decision.critical else ''}; {gate}"
    elif held:
        summary = "hold: drift trigger fired, waiting for labels before retraining"
    elif deduped:
        summary = f"no retrain: {', '.join(e.trigger for e in deduped)} trigger deduplicated (see reasons)"
    elif broken:
        summary = f"investigate: no usable data for {', '.join(broken)} (no trigger fired)"
    else:
        summary = "no retrain: no trigger fired"
    return {
        "summary": summary,
        "retrain": decision.retrain is not None,
        "waiting_for_labels": bool(held),
        "approval": decision.approval,
        "critical": decision.critical,
        "data_problems": broken,
        "reasons": [f"{e.trigger}: {e.status} — {e.reason}" for e in decision.evaluations],
        "evaluations": [e.to_dict() for e in decision.evaluations],
    }


def exit_status(decision: dict[str, Any]) -> int:
    """0: nothing to do; 1: a retrain (or a hold for labels) is prescribed, or data is missing."""
    return 1 if decision.get("retrain") or decision.get("waiting_for_labels") or decision.get("data_problems") else 0
